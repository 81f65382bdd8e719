"""Best-effort detection and masking of credentials in event attributes.

`scan` runs on every ingested event, so this module sits on the hot ingest path. It works in
two stages so that the common case, an event without secrets, costs one walk, two regex
searches and a decoding attempt for each string that is entirely base64:

* The gate walks the attributes once, skips strings shorter than 8 characters, looks up each
  dict key in a cache of credential-like names, joins the remaining strings with NUL separators
  and runs one precompiled prefilter regex over the joined text. The prefilter only matches
  where some precise rule could match, so a miss proves there is nothing to find. A second
  regex picks out whole strings that could be base64 payloads; those are decoded and checked.
* Only when the gate sees something does the precise stage walk again, string by string, with
  JSON Pointer paths, run the per-rule patterns, and build the masked copy.

Both walks are iterative, so deeply nested attributes cannot hit the recursion limit. Paths are
kept as linked (parent, key) tuples and only turned into pointers for findings.

A finding names a rule and an RFC 6901 JSON Pointer, never the secret. The masked copy replaces
the matched span with ``[REDACTED:<rule>]``, or the whole string when the evidence is the key
name or a decoded base64 payload. docs/secret-detection.md describes the rules for readers.
"""

from __future__ import annotations

import binascii
import bisect
import json
import math
import re
from collections.abc import Callable

__all__ = ["MASK_FORMAT", "RULES", "scan"]

MASK_FORMAT = "[REDACTED:{rule}]"

RULES: tuple[tuple[str, str], ...] = (
    (
        "aws_access_key_id",
        "AWS access key id: AKIA/ASIA/ABIA/ACCA and 16 uppercase letters or digits.",
    ),
    (
        "aws_secret_access_key",
        "40-character AWS secret access key assigned to a name like aws_secret_access_key.",
    ),
    ("github_token", "GitHub token: ghp_/gho_/ghu_/ghs_/ghr_ and 36 characters, or github_pat_."),
    ("openai_api_key", "OpenAI API key: sk-, sk-proj-, sk-svcacct- or sk-admin- and a long key."),
    ("anthropic_api_key", "Anthropic API key: sk-ant- and a long key."),
    (
        "slack_token",
        "Slack token (xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, xoxo-) or incoming webhook URL.",
    ),
    ("jwt", "JSON Web Token: three base64url segments, the first two starting with eyJ."),
    ("private_key", "PEM or PGP private key block, from its BEGIN line to its END line."),
    ("password_in_url", "Password in a URL's user information (scheme://user:password@host)."),
    ("bearer_token", "Bearer token of 20 or more characters, as in an Authorization header."),
    (
        "generic_secret",
        "Value of a key named like a credential (api_key, password, client_secret, token, ...).",
    ),
)

_MASKS = {name: MASK_FORMAT.format(rule=name) for name, _ in RULES}

# No rule can match fewer characters; testing the length first keeps ids, enum values and
# short words free of any regex work.
_MIN_LENGTH = 8
# A decoded payload can hold another encoded payload (Temporal wraps JSON in base64, and that
# JSON can carry base64 again). Bounded so that one crafted value cannot make an event costly.
_MAX_DECODE_DEPTH = 3

# --- values ----------------------------------------------------------------------------------
_ALNUM = re.compile(r"[A-Za-z0-9]")
_UPPER = re.compile(r"[A-Z]").search
_LOWER = re.compile(r"[a-z]").search
_DIGIT = re.compile(r"[0-9]").search
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
).fullmatch
_HASH_HEX = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{128}"
).fullmatch
_ALREADY_MASKED = re.compile(r"\[REDACTED(?::[a-z_]+)?\]").search
# What people write in place of a secret: mask characters (x counts, for "xxxx-xxxx"),
# templating and environment-variable references.
_PLACEHOLDER_SHAPE = re.compile(
    r"[\s*xX•·#._-]*"  # empty, or only mask characters
    r"|<[^<>]*>"  # <redacted>, <your-key>
    r"|\$\{[^{}]*\}"  # ${API_KEY}
    r"|\{\{[^{}]*\}\}"  # {{ secrets.TOKEN }}
    r"|%\([A-Za-z0-9_]+\)s"  # %(password)s
    r"|\$[A-Za-z_][A-Za-z0-9_]*"  # $API_KEY
).fullmatch
# Normalized (lowercase, letters and digits only) words that stand for "no real value here".
_PLACEHOLDER_WORDS = frozenset(
    {
        "apikey",
        "changeit",
        "changeme",
        "example",
        "filtered",
        "hidden",
        "masked",
        "none",
        "notset",
        "null",
        "omitted",
        "pass",
        "passwd",
        "password",
        "placeholder",
        "pwd",
        "redacted",
        "removed",
        "secret",
        "token",
        "undefined",
    }
)
# Partly masked values ("****4242", "sk-...abcd") show too little of the secret to matter.
_MASK_RUN = re.compile(r"\*{3,}|•{3,}|x{4,}|X{4,}|\.{3,}|…").search


def _normalize(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _is_placeholder(value: str) -> bool:
    """True for values that are plainly not a live secret: placeholders, masks, templates."""
    stripped = value.strip()
    if _PLACEHOLDER_SHAPE(stripped) or _ALREADY_MASKED(stripped):
        return True
    normalized = _normalize(stripped)
    if normalized in _PLACEHOLDER_WORDS or normalized.startswith("your"):
        return True
    return bool(_MASK_RUN(stripped)) and len(_ALNUM.findall(stripped)) < _MIN_LENGTH


def _mixed_classes(value: str) -> bool:
    return bool(_UPPER(value) and _LOWER(value) and _DIGIT(value))


def _looks_random(value: str) -> bool:
    """High-entropy test for values found by name in free text (api_key=..., secret: ...)."""
    if bool(_UPPER(value)) + bool(_LOWER(value)) + bool(_DIGIT(value)) < 2:
        return False
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    size = len(value)
    entropy = -sum(n / size * math.log2(n / size) for n in counts.values())
    # Random keys of 16+ characters drawn from ~62 symbols score well above 3 bits per
    # character; words, dates and repeated characters score lower.
    return entropy >= 3.0


# --- key names -------------------------------------------------------------------------------
# Key names are compared after normalization. Exact names cover short, ambiguous words ("token"
# alone is a credential, "next_page_token" is not); suffixes cover the compound names built
# around them ("stripe_api_key", "db_password"). Every entry ends in d, e, n, s, t or y, which
# the prefilter relies on (see _TAILS).
_SECRET_KEY_NAMES = frozenset(
    {
        "accesstoken",
        "apikey",
        "apitoken",
        "authorization",
        "authtoken",
        "clientsecret",
        "credentials",
        "passphrase",
        "passwd",
        "password",
        "privatekey",
        "pwd",
        "refreshtoken",
        "secret",
        "secretkey",
        "sessiontoken",
        "token",
        "xapikey",
    }
)
_SECRET_KEY_SUFFIXES = (
    "accesstoken",
    "apikey",
    "apitoken",
    "authtoken",
    "passphrase",
    "passwd",
    "password",
    "privatekey",
    "refreshtoken",
    "secret",
    "secretaccesskey",
    "secretkey",
    "sessiontoken",
)
_PASSWORD_SUFFIXES = ("passphrase", "passwd", "password", "pwd")


class _KeyKind:
    """What a credential-like key name says about its value."""

    __slots__ = ("aws", "directory", "password")

    def __init__(self, aws: bool, password: bool, directory: bool) -> None:
        self.aws = aws  # named like aws_secret_access_key
        self.password = password  # a password may be all digits; a token-named number is not
        self.directory = directory  # "pwd" is also the shell's working directory


def _classify_key(name: str) -> _KeyKind | None:
    normalized = _normalize(name)
    if normalized in _SECRET_KEY_NAMES or normalized.endswith(_SECRET_KEY_SUFFIXES):
        return _KeyKind(
            aws=normalized.endswith("secretaccesskey"),
            password=normalized.endswith(_PASSWORD_SUFFIXES),
            directory=normalized == "pwd",
        )
    return None


# The same agents send the same shapes, so keys repeat across events and classification is
# cached. The bound keeps a stream of unique keys from growing the cache without limit.
_KEY_CACHE: dict[object, _KeyKind | None] = {}
_KEY_CACHE_LIMIT = 8192
_UNSEEN = object()


def _key_kind(key: object) -> _KeyKind | None:
    kind = _KEY_CACHE.get(key, _UNSEEN)
    if kind is _UNSEEN:
        kind = _classify_key(key) if isinstance(key, str) else None
        if len(_KEY_CACHE) >= _KEY_CACHE_LIMIT:
            _KEY_CACHE.clear()
        _KEY_CACHE[key] = kind
    return kind  # type: ignore[return-value]


def _secret_value_by_key(value: str, kind: _KeyKind) -> bool:
    """Whether a string stored under a credential-like name is worth flagging."""
    if len(value) < _MIN_LENGTH or _is_placeholder(value):
        return False
    stripped = value.strip()
    if _UUID(stripped) or _HASH_HEX(stripped):
        # Under such names these are nearly always ids or checksums, not credentials.
        return False
    if kind.directory and _DIRECTORY(stripped):
        return False
    return kind.password or not stripped.isdigit()


_AWS_SECRET_VALUE = re.compile(r"[A-Za-z0-9/+]{40}").fullmatch
# An absolute or home-relative directory, as a shell tool reports its working directory.
_DIRECTORY = re.compile(r"~?(?:/[\w.@+-]*)+|[A-Za-z]:\\[^\s]*").fullmatch

# --- precise text rules ----------------------------------------------------------------------
# Each rule: name, pattern, the group whose span is masked (0 = whole match), and an optional
# check that rejects look-alikes the pattern alone cannot. Order is priority: when spans
# overlap, the earlier rule keeps its span ("Bearer <jwt>" is reported as jwt).
_Check = Callable[[re.Match[str]], bool]


def _openai_check(match: re.Match[str]) -> bool:
    body = match.group(0)[3:]
    for prefix in ("proj-", "svcacct-", "admin-"):
        if body.startswith(prefix):
            body = body[len(prefix) :]
            break
    # Real keys are random; "sk-" followed by a long hyphenated slug is not.
    return len(body) >= 32 and _mixed_classes(body)


def _anthropic_check(match: re.Match[str]) -> bool:
    return _mixed_classes(match.group(0)[7:])


def _slack_check(match: re.Match[str]) -> bool:
    token = match.group(0)
    # Real tokens carry numeric workspace and user ids; "xoxb-your-token-here" does not.
    return not token.startswith("xox") or bool(_DIGIT(token[5:]))


def _url_password_check(match: re.Match[str]) -> bool:
    return not _is_placeholder(match.group(1))


def _bearer_check(match: re.Match[str]) -> bool:
    token = match.group(1)
    # Opaque tokens carry digits or mixed case; "Bearer authentication_required" does not.
    return bool(_DIGIT(token) or (_UPPER(token) and _LOWER(token))) and not _is_placeholder(token)


# Where a pattern must not start inside a longer token, the check is a lookbehind placed after
# the first literal character (e.g. "A(?<![A-Za-z0-9]A)KIA"): a pattern that starts with a
# literal lets the regex engine jump between candidate positions instead of testing each one.
_TEXT_RULES: tuple[tuple[str, re.Pattern[str], int, _Check | None], ...] = (
    (
        "private_key",
        re.compile(
            r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----"
            # The body is the secret, so the span runs to the END line, or to the end of the
            # string when a truncated value has none.
            r"(?s:.*?-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----|.*)"
        ),
        0,
        None,
    ),
    (
        "aws_access_key_id",
        re.compile(r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        0,
        None,
    ),
    (
        "github_token",
        re.compile(
            r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9]{36}|ithub_pat_[A-Za-z0-9_]{82})"
            r"(?![A-Za-z0-9_])"
        ),
        0,
        None,
    ),
    (
        "anthropic_api_key",
        re.compile(r"s(?<![A-Za-z0-9_-]s)k-ant-[A-Za-z0-9_-]{32,}"),
        0,
        _anthropic_check,
    ),
    (
        "openai_api_key",
        re.compile(r"s(?<![A-Za-z0-9_-]s)k-(?!ant-)[A-Za-z0-9_-]{32,}"),
        0,
        _openai_check,
    ),
    (
        "slack_token",
        re.compile(
            r"x(?<![A-Za-z0-9]x)ox[abposr]-[A-Za-z0-9-]{10,}"
            r"|hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}"
        ),
        0,
        _slack_check,
    ),
    (
        "jwt",
        re.compile(
            r"e(?<![A-Za-z0-9_-]e)yJ[A-Za-z0-9_-]{7,}\.eyJ[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]{8,}"
            r"(?![A-Za-z0-9_-])"
        ),
        0,
        None,
    ),
    (
        "password_in_url",
        re.compile(
            r":(?<=[A-Za-z0-9+.-]:)//[^\s:/?#@\[\]]{0,256}:([^\s/?#@]{1,256})@[A-Za-z0-9\[]"
        ),
        1,
        _url_password_check,
    ),
    (
        "bearer_token",
        re.compile(
            r"(?:B(?<![A-Za-z0-9]B)(?:earer|EARER)|b(?<![A-Za-z0-9]b)earer)"
            r"\s+([A-Za-z0-9._~+/-]{20,}=*)"
        ),
        1,
        _bearer_check,
    ),
)

# Credentials assigned to a name in free text: NAME, an optional quote (possibly
# backslash-escaped, as in JSON inside a string), an optional space, ":" or "=" (but not "://"),
# the same again, an optional auth scheme word, and a VALUE of 16+ characters. The name is the
# whole run of name characters before the operator and is classified exactly like a dict key:
# aws_secret_access_key when it is named so and the value has that key's shape, generic_secret
# otherwise. Unlike a dict value, the value must also look random, because prose is full of
# "token: <something long>".
_VALUE = r"[^\s\"'\\,;&<>()\[\]{}|`]"
_QUOTE = r"(?:\\?[\"'])?"
_NAME = "[A-Za-z0-9_.-]"
_ASSIGNMENT = re.compile(
    rf"(?<!{_NAME})({_NAME}*[A-Za-z]){_QUOTE} ?(?:=|:(?!//)) ?{_QUOTE}"
    rf"(?:(?:Basic|Token) )?({_VALUE}{{16,}})"
)

# --- prefilter -------------------------------------------------------------------------------
# One search over the text that matches wherever a precise rule above could match. It must
# never miss what a precise rule would flag (a miss means the event is not looked at again),
# so each branch is a piece the corresponding rule requires. Every branch starts with a single
# literal character, chosen to be rare in ordinary text where possible ("J" of eyJ, "k" of sk-,
# "_" of ghp_); lookbehinds then confirm the characters before it. Starting with literals lets
# the regex engine skip quickly over characters that cannot begin any branch.
#
# The name=value rules need a name ending in a credential word; all of those end in one of the
# letters below (see _SECRET_KEY_NAMES), so the prefilter requires such a letter right before
# the operator, allowing the same quote and space shapes as _ASSIGNMENT, and a 16-character
# value after it.
_TAILS = "[dDeEnNsStTyY]"
_ASSIGN_BEHIND = "(?:{})".format(
    "|".join(
        f"(?<={_TAILS}{between}[:=])"
        for between in ("", "[\"' ]", "\\\\[\"']", "[\"'] ", "\\\\[\"'] ")
    )
)
_ASSIGN_AHEAD = rf" ?{_QUOTE}(?:(?:Basic|Token) )?{_VALUE}{{16}}"
_PREFILTER = re.compile(
    "|".join(
        (
            "A(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}",
            "_(?:(?<=gh[pousr]_)[A-Za-z0-9]{36}|(?<=github_)pat_)",
            r"k(?:-(?<=sk-)[A-Za-z0-9_-]{32}|\.com/services/(?<=hooks\.slack\.com/services/))",
            "xox[abposr]-",
            r"J(?<=eyJ)(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{7,}\.eyJ",
            "GIN (?<=-----BEGIN )",
            rf":(?://[^\s:/?#@\[\]]{{0,256}}:[^\s/?#@]{{1,256}}@|(?!//){_ASSIGN_BEHIND}{_ASSIGN_AHEAD})",
            rf"={_ASSIGN_BEHIND}{_ASSIGN_AHEAD}",
            r"B(?:earer|EARER)\s+[A-Za-z0-9._~+/-]{20}",
            r"bearer\s+[A-Za-z0-9._~+/-]{20}",
        )
    )
).search


class _Spans:
    """Accepted secret spans of one string, kept sorted and non-overlapping.

    Bisection keeps adding a span logarithmic in the number already accepted, so a string with
    very many matches (a log dump full of tokens) stays linear rather than quadratic.
    """

    __slots__ = ("ends", "rules", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.rules: list[str] = []

    def add(self, start: int, end: int, rule: str) -> None:
        index = bisect.bisect_right(self.starts, start)
        # A span overlapping one already accepted is dropped: rules are applied in priority
        # order, so the accepted one came from an equal or more specific rule.
        if index and self.ends[index - 1] > start:
            return
        if index < len(self.starts) and self.starts[index] < end:
            return
        self.starts.insert(index, start)
        self.ends.insert(index, end)
        self.rules.insert(index, rule)

    def mask(self, text: str) -> str:
        parts = []
        position = 0
        for start, end, rule in zip(self.starts, self.ends, self.rules, strict=True):
            parts.append(text[position:start])
            parts.append(_MASKS[rule])
            position = end
        parts.append(text[position:])
        return "".join(parts)


def _find_spans(text: str) -> _Spans:
    """The secrets in `text`, as non-overlapping spans; earlier rules win overlaps."""
    spans = _Spans()
    for rule, pattern, group, check in _TEXT_RULES:
        for match in pattern.finditer(text):
            if check is None or check(match):
                spans.add(match.start(group), match.end(group), rule)
    for match in _ASSIGNMENT.finditer(text):
        kind = _key_kind(match.group(1))
        value = match.group(2)
        if kind is None or not _secret_value_by_key(value, kind) or not _looks_random(value):
            continue
        rule = (
            "aws_secret_access_key" if kind.aws and _AWS_SECRET_VALUE(value) else "generic_secret"
        )
        spans.add(match.start(2), match.end(2), rule)
    return spans


# --- base64 payloads -------------------------------------------------------------------------
# Whole strings of 16+ characters from one base64 alphabet, with at most two "=" of padding.
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9_-]{16,}={0,2}").fullmatch
# The same, found as whole NUL-separated segments of the gate's joined text.
_BASE64_SEGMENTS = re.compile(
    r"\x00([A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9_-]{16,}={0,2})(?=\x00)"
).finditer
# Hex strings and UUIDs use only base64 characters, but they are hashes and ids, not payloads.
_HEXISH = re.compile(r"[0-9a-fA-F-]+").fullmatch
# Control characters other than tab, newline and carriage return mean binary, not text.
_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]").search


def _decode_base64_text(value: str) -> str | None:
    """The UTF-8 text a base64 or base64url string encodes, or None if it is not text."""
    if _HEXISH(value):
        return None
    body = value.rstrip("=")
    if (len(body) != len(value) and len(value) % 4) or len(body) % 4 == 1:
        return None  # impossible length, or padding that does not complete the last group
    # str.replace is several times faster than str.translate for two characters.
    body = body.replace("-", "+").replace("_", "/")
    try:
        raw = binascii.a2b_base64(body + "=" * (-len(body) % 4))
    except binascii.Error:
        return None
    if raw.isascii():
        text = raw.decode("ascii")
    else:
        # Most non-text payloads end up here; replacing instead of raising avoids the cost of
        # an exception per ordinary identifier that happens to use only base64 characters.
        text = raw.decode("utf-8", "replace")
        if "\ufffd" in text:
            return None
    return None if _BINARY(text) else text


def _rules_in_payload(value: str, depth: int) -> set[str] | None:
    """Rules that fire inside the decoded form of a base64 string (JSON or plain text)."""
    text = _decode_base64_text(value)
    if text is None:
        return None
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"'):
        try:
            decoded = json.loads(stripped)
        except (ValueError, RecursionError):  # deeply nested JSON raises RecursionError
            decoded = None
        if isinstance(decoded, (dict, list)):
            if not _gate(decoded, depth):
                return None
            hits = _collect(decoded, depth)
            return {rule for hit in hits for rule in hit[3]} if hits else None
        if isinstance(decoded, str):
            text = decoded
    if len(text) < _MIN_LENGTH:
        return None
    result = _check_string(text, None, depth)
    return set(result[0]) if result else None


# Short base64-looking strings repeat from event to event: encodings ("anNvbi9wbGFpbg==" is
# json/plain), enum names such as EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, which use only base64url
# characters. Those found to hide nothing are remembered, so that each is decoded once rather
# than once per event; long ones are payloads, nearly always unique, and are not kept. Only
# clean values are kept, so the cache never holds a string that was found to be a secret.
_CLEAN_PAYLOADS: set[tuple[str, int]] = set()
_CLEAN_PAYLOADS_LIMIT = 8192
_REMEMBERED_LENGTH = 64


def _payload_rules(value: str, depth: int) -> set[str] | None:
    """`_rules_in_payload`, remembering short values that hold nothing."""
    if len(value) > _REMEMBERED_LENGTH:
        return _rules_in_payload(value, depth)
    key = (value, depth)
    if key in _CLEAN_PAYLOADS:
        return None
    rules = _rules_in_payload(value, depth)
    if not rules:
        if len(_CLEAN_PAYLOADS) >= _CLEAN_PAYLOADS_LIMIT:
            _CLEAN_PAYLOADS.clear()
        _CLEAN_PAYLOADS.add(key)
    return rules


# --- strings ---------------------------------------------------------------------------------


def _check_string(value: str, key: object, depth: int) -> tuple[tuple[str, ...], str] | None:
    """(rules, masked value) for one string of 8+ characters, or None when it holds nothing.

    Text rules come first and mask spans. Failing those, a credential-like key masks the whole
    value; failing that, a base64 payload whose decoded form holds a secret does.
    """
    if _PREFILTER(value) is not None:
        spans = _find_spans(value)
        if spans.rules:
            return tuple(sorted(set(spans.rules))), spans.mask(value)
    kind = _key_kind(key) if key is not None else None
    if kind is not None and _secret_value_by_key(value, kind):
        rule = (
            "aws_secret_access_key"
            if kind.aws and _AWS_SECRET_VALUE(value.strip())
            else "generic_secret"
        )
        return (rule,), _MASKS[rule]
    if depth < _MAX_DECODE_DEPTH and _BASE64(value):
        rules = _payload_rules(value, depth + 1)
        if rules:
            ordered = tuple(sorted(rules))
            return ordered, _MASKS[ordered[0]]
    return None


# --- walking ---------------------------------------------------------------------------------


def _gate(root: dict | list, depth: int) -> bool:
    """False only if no string under `root` can hold a finding; cheap, paths are not tracked."""
    strings = [""]  # the empty ends make the joined text start and end with a separator
    add = strings.append
    stack = [root]
    pop = stack.pop
    push = stack.append
    key_cache = _KEY_CACHE
    while stack:
        node = pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str):
                    if len(value) >= _MIN_LENGTH:
                        kind = key_cache.get(key, _UNSEEN)
                        if kind is _UNSEEN:
                            kind = _key_kind(key)
                        if kind is not None:
                            return True
                        add(value)
                elif isinstance(value, (dict, list)):
                    push(value)
        else:
            for value in node:
                if isinstance(value, str):
                    if len(value) >= _MIN_LENGTH:
                        add(value)
                elif isinstance(value, (dict, list)):
                    push(value)
    if len(strings) == 1:
        return False
    strings.append("")
    # No prefilter branch can match a NUL or look behind one, so a match in the joined text
    # lies inside one string, and every string's own matches are still found.
    joined = "\x00".join(strings)
    if _PREFILTER(joined) is not None:
        return True
    if depth < _MAX_DECODE_DEPTH:
        for match in _BASE64_SEGMENTS(joined):
            if _payload_rules(match.group(1), depth + 1):
                return True
    return False


# (container, key, path node, rules, masked value); a path node is (parent node, key) or None.
_Hit = tuple[object, object, object, tuple[str, ...], str]


def _collect(root: dict | list, depth: int) -> list[_Hit] | None:
    """Every flagged string under `root`, with where it is and its masked form."""
    hits: list[_Hit] = []
    stack: list[tuple[object, object]] = [(root, None)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            items = node.items()
            keyed = True
        else:
            items = enumerate(node)  # type: ignore[arg-type]
            keyed = False
        for key, value in items:
            if isinstance(value, str):
                if len(value) >= _MIN_LENGTH:
                    result = _check_string(value, key if keyed else None, depth)
                    if result is not None:
                        hits.append((node, key, path, result[0], result[1]))
            elif isinstance(value, (dict, list)):
                stack.append((value, (path, key)))
    return hits or None


def _pointer(path: object, key: object) -> str:
    parts = [str(key)]
    while path is not None:
        path, parent_key = path  # type: ignore[misc]
        parts.append(str(parent_key))
    parts.reverse()
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


_NOTHING_REPLACED: dict[object, str] = {}


def _masked_copy(root: dict | list, replacements: dict[int, dict[object, str]]) -> dict | list:
    """Deep copy of `root` with the values at (container id, key) replaced; iterative."""
    copy_root: dict | list = {} if isinstance(root, dict) else [None] * len(root)
    stack = [(root, copy_root)]
    while stack:
        source, target = stack.pop()
        replaced = replacements.get(id(source), _NOTHING_REPLACED)
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            if key in replaced:
                target[key] = replaced[key]
            elif isinstance(value, dict):
                target[key] = child = {}
                stack.append((value, child))
            elif isinstance(value, list):
                target[key] = child = [None] * len(value)
                stack.append((value, child))
            else:
                target[key] = value
    return copy_root


def scan(attributes: dict) -> tuple[list[dict], dict | None]:
    """Scan an event's attributes (a JSON-compatible dict: dict/list/str/int/float/bool/None)
    for credentials.

    Returns (findings, masked). findings: list of {"rule": str, "path": str} sorted by
    (path, rule), no duplicates, where path is an RFC 6901 JSON Pointer into attributes (e.g.
    "/arguments/api_key", "/messages/0/content"; "" is never used for the root). The secret
    itself never appears in a finding. masked: None when there are no findings, else a deep
    copy of attributes in which every flagged string is masked (the matched span replaced by
    "[REDACTED:<rule>]", or the whole value replaced by "[REDACTED:<rule>]" when the rule is
    key-based or the secret was found inside a decoded base64 payload). Never mutates the
    input.
    """
    if not isinstance(attributes, (dict, list)) or not _gate(attributes, 0):
        return [], None
    hits = _collect(attributes, 0)
    if hits is None:
        return [], None
    found: set[tuple[str, str]] = set()
    # Keyed by container identity: the input is alive for the whole call, so ids are stable,
    # and no paths need to be followed again while copying.
    replacements: dict[int, dict[object, str]] = {}
    for container, key, path, rules, masked_value in hits:
        pointer = _pointer(path, key)
        for rule in rules:
            found.add((pointer, rule))
        replacements.setdefault(id(container), {})[key] = masked_value
    findings = [{"rule": rule, "path": pointer} for pointer, rule in sorted(found)]
    return findings, _masked_copy(attributes, replacements)
