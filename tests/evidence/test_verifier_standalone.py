"""The standalone verifier stands alone: it imports nothing of Django or Flightdeck, and its
restated hash definitions and canonical JSON are byte for byte those of history/chain.py."""

from __future__ import annotations

import ast
import sys

from hypothesis import given
from hypothesis import strategies as st

from evidence import verify_bundle
from history import chain
from tests.evidence.conftest import VERIFIER, run_standalone

STANDARD_LIBRARY = sys.stdlib_module_names


def test_it_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(VERIFIER.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported - set(STANDARD_LIBRARY) - {"__future__"} == {"cryptography"}


header_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
header_values = st.fixed_dictionaries({
    "workflow_id": header_text, "run_id": header_text,
    "event_id": st.integers(min_value=1, max_value=2**53 - 1),
    "type": header_text, "time": header_text,
    "workflow_type": st.none() | header_text, "identity": st.none() | header_text,
    "refs": st.dictionaries(header_text, st.integers(min_value=-(2**63), max_value=2**63 - 1),
                            max_size=5),
    "attributes_digest": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
})


@given(header_values)
def test_its_canonical_json_is_the_stored_headers_byte_for_byte(header):
    assert verify_bundle.canonical(header) == chain.canonical(header)


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=200),
       st.binary(min_size=32, max_size=32))
def test_its_hashes_are_history_chains(salt, attributes, previous):
    assert verify_bundle.attributes_digest(salt.hex(), attributes) == \
        chain.attributes_digest(salt.hex(), attributes)
    assert verify_bundle.chain_link(previous.hex(), attributes) == \
        chain.link(previous.hex(), attributes)
    assert verify_bundle.GENESIS == chain.GENESIS


def test_it_needs_a_trusted_key(tmp_path):
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(b"PK")
    result = run_standalone(bundle)
    assert result.returncode == 2 and "name the key you trust" in result.stderr


def test_it_refuses_a_malformed_fingerprint(tmp_path):
    result = run_standalone(tmp_path / "b.zip", "--fingerprint", "abc")
    assert result.returncode == 2 and "is not a SHA-256 fingerprint" in result.stderr


def test_it_says_when_there_is_no_such_file(tmp_path, fingerprint):
    result = run_standalone(tmp_path / "missing.zip", "--fingerprint", fingerprint)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_it_says_when_the_file_is_not_a_zip(tmp_path, fingerprint):
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(b"hello")
    result = run_standalone(bundle, "--fingerprint", f"SHA256:{fingerprint.upper()}")
    assert result.returncode == 1 and "cannot be read as a zip file" in result.stdout


def test_a_zip_holding_one_name_twice_fails(evidence_run, alice, build_bundle, fingerprint,
                                            tmp_path):
    """Zip tools disagree on which of two same-named entries counts: never accept one."""
    import warnings
    import zipfile

    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    with zipfile.ZipFile(path) as source:
        name = next(n for n in source.namelist() if n.endswith("events.jsonl"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(name, b"{}\n")
    result = run_standalone(path, "--fingerprint", fingerprint)
    assert result.returncode == 1 and f"{name}: appears twice in the zip" in result.stdout


def test_a_line_without_end_is_refused_not_held_in_memory(evidence_run, alice, build_bundle,
                                                          fingerprint, tmp_path, monkeypatch):
    """A zip bomb's shape: one long line with no newline (compressed, gigabytes fit in
    megabytes). The verifier stops reading the file past MAX_LINE (lowered here) and says
    so, rather than holding the line whole."""
    import zipfile

    from tests.evidence.conftest import rewrite

    monkeypatch.setattr(verify_bundle, "MAX_LINE", 1 << 20)
    _, path = build_bundle(alice, run=str(evidence_run.uuid))
    bomb = rewrite(path, tmp_path / "bomb.zip", lambda name, data: (
        name, b"{" + b" " * (3 << 20) if name.endswith("events.jsonl") else data
    ))
    with zipfile.ZipFile(bomb) as archive:
        name = next(n for n in archive.namelist() if n.endswith("events.jsonl"))
    trusted = verify_bundle.TrustedKeys()
    trusted.add_fingerprint(fingerprint)
    result = verify_bundle.verify_bundle(bomb, trusted)
    relative = name.split("/", 1)[1]
    assert any(relative in problem and "line 1 is longer than 1048576 bytes" in problem
               for problem in map(str, result.problems)), result.problems


def test_lines_split_across_blocks_are_read_whole(tmp_path, monkeypatch):
    import io
    import zipfile

    monkeypatch.setattr(verify_bundle, "READ_BLOCK", 7)
    data = b"first line\n\nthird, longer than a block\nlast without newline"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("b/manifest.json", b"{}")
        archive.writestr("b/x.jsonl", data)
    with zipfile.ZipFile(buffer) as archive:
        bundle = verify_bundle.Bundle(archive, verify_bundle.Result())
        assert bundle.index()
        assert list(bundle.lines("x.jsonl")) == list(enumerate(data.split(b"\n"), start=1))
