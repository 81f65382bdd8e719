"""Tests for history.secrets: every rule, the look-alikes it must leave alone, masking, paths.

All fake credentials are assembled at run time from pieces and a seeded generator, so this file
holds no literal that looks like a real token to a repository secret scanner.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from history.secrets import _PREFILTER, MASK_FORMAT, RULES, _find_spans, scan

RULE_NAMES = {name for name, _ in RULES}
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
UPPER_DIGITS = string.ascii_uppercase + string.digits
_rng = random.Random(20240517)


def fake(length: int, alphabet: str = ALNUM) -> str:
    """A random-looking string; seeded so failures reproduce."""
    return "".join(_rng.choice(alphabet) for _ in range(length))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def mask(rule: str) -> str:
    return MASK_FORMAT.format(rule=rule)


# --- fake secrets ------------------------------------------------------------------------------
AWS_KEY_ID = "AK" + "IA" + fake(16, UPPER_DIGITS)
AWS_TEMP_KEY_ID = "AS" + "IA" + fake(16, UPPER_DIGITS)
AWS_SECRET = fake(40, ALNUM + "/+")
GITHUB_CLASSIC = "gh" + "p_" + fake(36)
GITHUB_OAUTH = "gh" + "o_" + fake(36)
GITHUB_FINE_GRAINED = "github" + "_pat_" + fake(22) + "_" + fake(59)
OPENAI_LEGACY = "sk" + "-" + fake(48)
OPENAI_PROJECT = "sk" + "-proj-" + fake(120, URLSAFE)
ANTHROPIC = "sk" + "-ant-api03-" + fake(93, URLSAFE) + "AA"
SLACK_BOT = "xo" + "xb-" + fake(12, string.digits) + "-" + fake(13, string.digits) + "-" + fake(24)
SLACK_USER = "xo" + "xp-" + fake(12, string.digits) + "-" + fake(13, string.digits) + "-" + fake(32)
SLACK_WEBHOOK_PATH = "T" + fake(10, UPPER_DIGITS) + "/B" + fake(10, UPPER_DIGITS) + "/" + fake(24)
SLACK_WEBHOOK = "https://hooks.slack" + ".com/services/" + SLACK_WEBHOOK_PATH
JWT = (
    b64url(json.dumps({"alg": "HS256", "typ": "JWT"}))
    + "."
    + b64url(json.dumps({"sub": "agent-7", "iat": 1716000000}))
    + "."
    + fake(43, URLSAFE)
)
KEY_BODY = "\n".join(fake(64, ALNUM + "+/") for _ in range(4))
BEGIN, END = "-----BEGIN ", "-----END "
RSA_KEY = BEGIN + "RSA PRIVATE" + " KEY-----\n" + KEY_BODY + "\n" + END + "RSA PRIVATE KEY-----"
OPENSSH_KEY = (
    BEGIN + "OPENSSH PRIVATE" + " KEY-----\n" + KEY_BODY + "\n" + END + "OPENSSH PRIVATE KEY-----"
)
PGP_KEY = (
    BEGIN
    + "PGP PRIVATE KEY"
    + " BLOCK-----\n\n"
    + KEY_BODY
    + "\n"
    + END
    + "PGP PRIVATE KEY BLOCK-----"
)
PLAIN_KEY_TRUNCATED = BEGIN + "PRIVATE" + " KEY-----\n" + KEY_BODY[:100]
URL_PASSWORD = "Zq" + fake(14)
BEARER = fake(40, URLSAFE)
GENERIC = fake(24)
GENERIC_2 = fake(32)

# (id, attributes, expected findings as (path, rule), texts that must vanish from the masked copy)
TRUE_POSITIVES: list[tuple[str, dict, list[tuple[str, str]], list[str]]] = [
    # aws_access_key_id
    (
        "aws-id-in-text",
        {"log": f"uploading with {AWS_KEY_ID} to s3"},
        [("/log", "aws_access_key_id")],
        [AWS_KEY_ID],
    ),
    (
        "aws-id-nested-list",
        {"env": [{"name": "AWS_ACCESS_KEY_ID", "value": AWS_TEMP_KEY_ID}]},
        [("/env/0/value", "aws_access_key_id")],
        [AWS_TEMP_KEY_ID],
    ),
    # aws_secret_access_key
    (
        "aws-secret-by-key",
        {"aws_secret_access_key": AWS_SECRET},
        [("/aws_secret_access_key", "aws_secret_access_key")],
        [AWS_SECRET],
    ),
    (
        "aws-secret-boto-key",
        {"Credentials": {"SecretAccessKey": AWS_SECRET}},
        [("/Credentials/SecretAccessKey", "aws_secret_access_key")],
        [AWS_SECRET],
    ),
    (
        "aws-secret-in-text",
        {"cmd": f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET} && deploy"},
        [("/cmd", "aws_secret_access_key")],
        [AWS_SECRET],
    ),
    # github_token
    (
        "github-classic-list",
        {"tokens_seen": ["none", GITHUB_CLASSIC]},
        [("/tokens_seen/1", "github_token")],
        [GITHUB_CLASSIC],
    ),
    (
        "github-oauth-nested",
        {"a": {"b": {"c": f"git clone https://{GITHUB_OAUTH}@github.com/x"}}},
        [("/a/b/c", "github_token")],
        [GITHUB_OAUTH],
    ),
    (
        "github-fine-grained",
        {"output": f"GH_TOKEN={GITHUB_FINE_GRAINED}\n"},
        [("/output", "github_token")],
        [GITHUB_FINE_GRAINED],
    ),
    # openai_api_key
    (
        "openai-legacy-message",
        {"messages": [{"role": "user", "content": f"use {OPENAI_LEGACY}"}]},
        [("/messages/0/content", "openai_api_key")],
        [OPENAI_LEGACY],
    ),
    (
        "openai-project",
        {"client": {"opts": [OPENAI_PROJECT]}},
        [("/client/opts/0", "openai_api_key")],
        [OPENAI_PROJECT],
    ),
    # anthropic_api_key
    (
        "anthropic-env-line",
        {"env": f"ANTHROPIC_API_KEY={ANTHROPIC}"},
        [("/env", "anthropic_api_key")],
        [ANTHROPIC],
    ),
    (
        "anthropic-in-list",
        {"args": ["--key", ANTHROPIC]},
        [("/args/1", "anthropic_api_key")],
        [ANTHROPIC],
    ),
    # slack_token
    ("slack-bot", {"slack": {"bot": SLACK_BOT}}, [("/slack/bot", "slack_token")], [SLACK_BOT]),
    (
        "slack-user-text",
        {"note": f"token is {SLACK_USER}, rotate it"},
        [("/note", "slack_token")],
        [SLACK_USER],
    ),
    (
        "slack-webhook",
        {"notify": [{"url": SLACK_WEBHOOK}]},
        [("/notify/0/url", "slack_token")],
        [SLACK_WEBHOOK_PATH],
    ),
    # jwt
    ("jwt-id-token", {"id_token": JWT}, [("/id_token", "jwt")], [JWT]),
    (
        "jwt-behind-bearer",
        {"request": {"headers": [f"Authorization: Bearer {JWT}"]}},
        [("/request/headers/0", "jwt")],
        [JWT],
    ),
    # private_key
    (
        "pem-rsa-in-text",
        {"file": f"contents:\n{RSA_KEY}\n"},
        [("/file", "private_key")],
        [KEY_BODY],
    ),
    ("pem-openssh", {"key_material": OPENSSH_KEY}, [("/key_material", "private_key")], [KEY_BODY]),
    ("pgp-block", {"blobs": [PGP_KEY]}, [("/blobs/0", "private_key")], [KEY_BODY]),
    (
        "pem-truncated",
        {"partial": PLAIN_KEY_TRUNCATED},
        [("/partial", "private_key")],
        [KEY_BODY[:100]],
    ),
    # password_in_url
    (
        "url-postgres",
        {"dsn": f"postgresql://app:{URL_PASSWORD}@db.internal:5432/app"},
        [("/dsn", "password_in_url")],
        [URL_PASSWORD],
    ),
    (
        "url-redis-no-user",
        {"caches": [f"redis://:{URL_PASSWORD}@cache:6379/0"]},
        [("/caches/0", "password_in_url")],
        [URL_PASSWORD],
    ),
    # bearer_token
    (
        "bearer-header",
        {"headers": {"Authorization": f"Bearer {BEARER}"}},
        [("/headers/Authorization", "bearer_token")],
        [BEARER],
    ),
    (
        "bearer-lowercase-curl",
        {"cmd": f"curl -H 'authorization: bearer {BEARER}' https://api"},
        [("/cmd", "bearer_token")],
        [BEARER],
    ),
    # generic_secret, by key
    (
        "generic-stripe",
        {"stripe_api_key": "rk_" + GENERIC},
        [("/stripe_api_key", "generic_secret")],
        [GENERIC],
    ),
    (
        "generic-db-password",
        {"db": [{"password": "correct horse battery"}]},
        [("/db/0/password", "generic_secret")],
        ["correct horse battery"],
    ),
    (
        "generic-client-secret",
        {"oauth": {"client_secret": GENERIC}},
        [("/oauth/client_secret", "generic_secret")],
        [GENERIC],
    ),
    (
        "generic-x-api-key",
        {"headers": {"X-Api-Key": GENERIC}},
        [("/headers/X-Api-Key", "generic_secret")],
        [GENERIC],
    ),
    (
        "generic-basic-auth",
        {"headers": {"authorization": "Basic " + b64("user:" + GENERIC)}},
        [("/headers/authorization", "generic_secret")],
        [b64("user:" + GENERIC)],
    ),
    (
        "generic-pwd-not-a-directory",
        {"login": {"user": "ada", "pwd": "hunter2hunter2"}},
        [("/login/pwd", "generic_secret")],
        ["hunter2hunter2"],
    ),
    (
        "generic-numeric-password",
        {"password": "12345678"},
        [("/password", "generic_secret")],
        ["12345678"],
    ),
    # generic_secret, by name in text
    (
        "generic-json-in-text",
        {"log": 'config = {"apiKey": "' + GENERIC + '", "retries": 3}'},
        [("/log", "generic_secret")],
        [GENERIC],
    ),
    (
        "generic-query-string",
        {"url": f"https://api.example.com/v1?api_key={GENERIC}&q=wind"},
        [("/url", "generic_secret")],
        [GENERIC],
    ),
    (
        "generic-yaml-line",
        {"file": f"db:\n  secret: {GENERIC_2}\n  port: 5432"},
        [("/file", "generic_secret")],
        [GENERIC_2],
    ),
    # decoded payloads
    (
        "temporal-json-payload",
        {
            "input": {
                "payloads": [
                    {
                        "metadata": {"encoding": b64("json/plain")},
                        "data": b64(json.dumps({"api_key": GENERIC, "n": 1})),
                    }
                ]
            }
        },
        [("/input/payloads/0/data", "generic_secret")],
        [b64(json.dumps({"api_key": GENERIC, "n": 1}))],
    ),
    (
        "temporal-json-string-payload",
        {
            "result": {
                "metadata": {"encoding": b64("json/plain")},
                "data": b64(json.dumps(f"connect with {OPENAI_LEGACY}")),
            }
        },
        [("/result/data", "openai_api_key")],
        [b64(json.dumps(f"connect with {OPENAI_LEGACY}"))],
    ),
    (
        "base64url-json",
        {"state": b64url(json.dumps({"session": {"access_token": GENERIC}}))},
        [("/state", "generic_secret")],
        [b64url(json.dumps({"session": {"access_token": GENERIC}}))],
    ),
    (
        "base64-plain-text",
        {"blobs": [b64(f"export GITHUB_TOKEN={GITHUB_CLASSIC}\n")]},
        [("/blobs/0", "github_token")],
        [b64(f"export GITHUB_TOKEN={GITHUB_CLASSIC}\n")],
    ),
    (
        "base64-twice",
        {"wrapped": b64(b64(f"key {AWS_KEY_ID}"))},
        [("/wrapped", "aws_access_key_id")],
        [b64(b64(f"key {AWS_KEY_ID}"))],
    ),
    # several in one event
    (
        "several",
        {"a": f"{AWS_KEY_ID} and {GITHUB_CLASSIC}", "b": [{"token": GENERIC}], "c": JWT},
        [
            ("/a", "aws_access_key_id"),
            ("/a", "github_token"),
            ("/b/0/token", "generic_secret"),
            ("/c", "jwt"),
        ],
        [AWS_KEY_ID, GITHUB_CLASSIC, GENERIC, JWT],
    ),
]


@pytest.mark.parametrize(
    ("attributes", "expected", "secrets"),
    [pytest.param(a, e, s, id=i) for i, a, e, s in TRUE_POSITIVES],
)
def test_true_positives(attributes: dict, expected: list, secrets: list[str]) -> None:
    before = copy.deepcopy(attributes)
    findings, masked = scan(attributes)
    assert findings == [{"rule": rule, "path": path} for path, rule in expected]
    assert masked is not None
    dumped_masked = json.dumps(masked)
    dumped_findings = json.dumps(findings)
    for secret in secrets:
        assert secret not in dumped_masked
        assert secret not in dumped_findings
    assert attributes == before
    # The masked copy holds nothing left to find.
    assert scan(masked) == ([], None)


def test_every_rule_has_true_positives() -> None:
    counts = {name: 0 for name in RULE_NAMES}
    for _, _, expected, _ in TRUE_POSITIVES:
        for _, rule in expected:
            counts[rule] += 1
    assert all(count >= 2 for count in counts.values()), counts


def test_exports() -> None:
    assert MASK_FORMAT == "[REDACTED:{rule}]"
    assert [name for name, _ in RULES] == [
        "aws_access_key_id",
        "aws_secret_access_key",
        "github_token",
        "openai_api_key",
        "anthropic_api_key",
        "slack_token",
        "jwt",
        "private_key",
        "password_in_url",
        "bearer_token",
        "generic_secret",
    ]
    assert all(isinstance(text, str) and "\n" not in text and text for _, text in RULES)


@pytest.mark.parametrize(
    ("attributes", "masked"),
    [
        pytest.param(
            {"dsn": f"postgresql://app:{URL_PASSWORD}@db:5432/app"},
            {"dsn": f"postgresql://app:{mask('password_in_url')}@db:5432/app"},
            id="url-password-only",
        ),
        pytest.param(
            {"h": f"Bearer {BEARER}"},
            {"h": f"Bearer {mask('bearer_token')}"},
            id="bearer-token-only",
        ),
        pytest.param(
            {"h": f"Authorization: Bearer {JWT}"},
            {"h": f"Authorization: Bearer {mask('jwt')}"},
            id="jwt-wins-over-bearer",
        ),
        pytest.param(
            {"log": f"a {AWS_KEY_ID} b {AWS_TEMP_KEY_ID} c"},
            {"log": f"a {mask('aws_access_key_id')} b {mask('aws_access_key_id')} c"},
            id="two-spans",
        ),
        pytest.param(
            {"file": f"before\n{RSA_KEY}\nafter"},
            {"file": f"before\n{mask('private_key')}\nafter"},
            id="pem-block-to-end-line",
        ),
        pytest.param(
            {"partial": "x " + PLAIN_KEY_TRUNCATED},
            {"partial": "x " + mask("private_key")},
            id="pem-without-end-to-end-of-string",
        ),
        pytest.param(
            {"cfg": f"api_key={GENERIC}&mode=fast"},
            {"cfg": f"api_key={mask('generic_secret')}&mode=fast"},
            id="text-assignment-value-only",
        ),
        pytest.param(
            {"db_password": "correct horse battery"},
            {"db_password": mask("generic_secret")},
            id="key-based-whole-value",
        ),
        pytest.param(
            {"data": b64(json.dumps({"password": "hunter2hunter2"})), "n": 1},
            {"data": mask("generic_secret"), "n": 1},
            id="decoded-whole-value",
        ),
        pytest.param(
            {"x": [1, 2.5, True, None, {"k": "v"}], "aws_secret_access_key": AWS_SECRET},
            {
                "x": [1, 2.5, True, None, {"k": "v"}],
                "aws_secret_access_key": mask("aws_secret_access_key"),
            },
            id="other-values-kept",
        ),
    ],
)
def test_masked_values(attributes: dict, masked: dict) -> None:
    assert scan(attributes)[1] == masked


def test_anthropic_is_not_reported_as_openai() -> None:
    findings, _ = scan({"k": ANTHROPIC})
    assert findings == [{"rule": "anthropic_api_key", "path": "/k"}]


def test_paths_are_escaped_json_pointers() -> None:
    attributes = {"a/b": {"m~n": [GENERIC, {"~/": f"Bearer {BEARER}"}]}, "": {"pwd": GENERIC}}
    findings, masked = scan(attributes)
    assert findings == [
        {"rule": "generic_secret", "path": "//pwd"},
        {"rule": "bearer_token", "path": "/a~1b/m~0n/1/~0~1"},
    ]
    assert masked is not None
    for finding in findings:
        assert resolve(masked, finding["path"]) != resolve(attributes, finding["path"])


def test_findings_sorted_and_unique() -> None:
    text = f"{GITHUB_CLASSIC} {GITHUB_OAUTH} {AWS_KEY_ID}"
    findings, _ = scan({"z": text, "a": [text, text]})
    assert findings == [
        {"rule": "aws_access_key_id", "path": "/a/0"},
        {"rule": "github_token", "path": "/a/0"},
        {"rule": "aws_access_key_id", "path": "/a/1"},
        {"rule": "github_token", "path": "/a/1"},
        {"rule": "aws_access_key_id", "path": "/z"},
        {"rule": "github_token", "path": "/z"},
    ]


def test_masked_is_a_deep_copy_and_input_is_untouched() -> None:
    attributes = {"outer": {"inner": [GENERIC, {"k": "v"}], "token": GENERIC}, "keep": ["a"]}
    before = copy.deepcopy(attributes)
    _, masked = scan(attributes)
    assert attributes == before
    assert masked is not None
    assert masked is not attributes
    assert masked["keep"] == ["a"] and masked["keep"] is not attributes["keep"]
    assert masked["outer"]["inner"][1] is not attributes["outer"]["inner"][1]
    masked["keep"].append("b")
    masked["outer"]["inner"][1]["k"] = "changed"
    assert attributes == before


def test_dict_keys_are_not_scanned_as_values() -> None:
    assert scan({GITHUB_CLASSIC: "value", AWS_KEY_ID: 1}) == ([], None)


def test_deep_nesting() -> None:
    depth = 5000
    attributes: dict = {}
    node = attributes
    for _ in range(depth):
        node["k"] = {}
        node = node["k"]
    node["list"] = [[[[{"api_key": GENERIC}]]]]
    findings, masked = scan(attributes)
    assert findings == [{"rule": "generic_secret", "path": "/k" * depth + "/list/0/0/0/0/api_key"}]
    assert masked is not None
    assert resolve(masked, findings[0]["path"]) == mask("generic_secret")
    assert resolve(attributes, findings[0]["path"]) == GENERIC


def test_deeply_nested_json_inside_base64_does_not_crash() -> None:
    payload = b64("[" * 50_000 + "]" * 50_000)
    assert scan({"data": payload}) == ([], None)


# --- look-alikes -------------------------------------------------------------------------------
SHA1 = fake(40, "0123456789abcdef")
SHA256 = fake(64, "0123456789abcdef")
MD5 = fake(32, "0123456789abcdef")
UUID = "-".join(fake(n, "0123456789abcdef") for n in (8, 4, 4, 4, 12))
# A 1x1 PNG, as agents send screenshots and thumbnails.
TINY_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
    "2mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

LOOK_ALIKES: list[tuple[str, object]] = [
    ("sha1", SHA1),
    ("sha256", SHA256),
    ("md5", MD5),
    ("uuid", UUID),
    ("git-commit-in-text", f"merged {SHA1} into main"),
    ("base64-of-prose", b64("The wind farm produced 1.2 TWh in 2023, up from 1.1 TWh.")),
    (
        "base64-of-random-bytes",
        base64.b64encode(bytes(_rng.randrange(256) for _ in range(96))).decode(),
    ),
    ("base64url-id", b64url("session-opaque-" + fake(20))),
    ("base64-of-json-without-secrets", b64(json.dumps({"user": "ada", "max_tokens": 4096}))),
    ("sk-in-prose", "the task-sk-1 finished, then desk-sk-2 and risk-assessment-sk-3 ran"),
    ("sk-slug", "sk-" + "this-is-a-long-hyphenated-identifier-for-a-task"),
    ("jwt-two-segments", b64url('{"alg":"none"}') + "." + b64url('{"sub":"agent"}')),
    ("jwt-like-prose", "eyJ is what base64 of '{\"' starts with"),
    ("akia-in-sentence", "AKIA is the prefix of long-term AWS access key ids"),
    ("akia-short", "AKIA" + "ABC123 is too short"),
    ("github-prefix-short", "ghp_" + "short"),
    ("xoxb-placeholder", "xoxb-" + "your-bot-token-here"),
    ("password-label-empty", "password: "),
    ("password-prose", "Please enter your password: it must have 12 characters."),
    ("url-user-no-password", "https://user@example.com/path"),
    ("url-empty-password", "https://user:@example.com/"),
    ("url-star-password", "https://user:" + "****" + "@example.com/"),
    ("url-x-password", "https://user:" + "xxxxxxxx" + "@example.com/"),
    ("url-templated-password", "postgres://app:" + "${DB_PASSWORD}" + "@db/app"),
    ("url-angle-password", "postgres://app:" + "<password>" + "@db/app"),
    ("url-with-port", "https://example.com:8443/path?x=1#frag"),
    ("long-words", "antidisestablishmentarianism floccinaucinihilipilification"),
    ("bearer-prose", "Bearer authentication_is_required_here before access"),
    ("token-prose", "token: the_model_counted_tokens_carefully"),
    ("data-url-small-image", "data:image/png;base64," + TINY_PNG),
    ("timestamp", "2024-05-17T09:31:22.481Z"),
    ("model-name", "claude-3-5-sonnet-20241022"),
    ("public-key", BEGIN + "PUBLIC KEY-----\n" + KEY_BODY + "\n" + END + "PUBLIC KEY-----"),
    ("already-masked", "Bearer " + mask("bearer_token")),
    ("numbers", [4096, 3.14, -1, 10**30]),
    ("booleans-null", [True, False, None]),
]

KEYED_LOOK_ALIKES: list[tuple[str, dict]] = [
    ("max-tokens", {"max_tokens": 4096}),
    ("token-count-numeric-string", {"token_count": "12345678"}),
    ("token-numeric-string", {"token": "1234567890"}),
    ("tokens", {"tokens": "plenty of them left"}),
    ("next-page-token", {"next_page_token": "CiAKGjBpNDd2Nmp2Zml2cXRwYjBp"}),
    ("secret-santa-count", {"secret_santa_count": 12}),
    ("password-hint", {"password_hint": "name of the first pet"}),
    ("password-empty", {"password": ""}),
    ("password-short", {"password": "abc"}),
    ("password-stars", {"password": "********"}),
    ("api-key-redacted", {"api_key": "<redacted>"}),
    ("api-key-env-ref", {"api_key": "${OPENAI_API_KEY}"}),
    ("api-key-template", {"api_key": "{{ secrets.API_KEY }}"}),
    ("api-key-your", {"api_key": "YOUR_API_KEY_HERE"}),
    ("client-secret-changeme", {"client_secret": "changeme"}),
    ("secret-partially-masked", {"secret": "****" + "4242"}),
    ("api-key-uuid", {"api_key": UUID}),
    ("token-sha256", {"token": SHA256}),
    ("already-masked", {"password": mask("generic_secret")}),
    ("secret-reference", {"secret_name": "prod/db/password", "secret_arn": "arn:aws:x:secret"}),
    ("api-key-id", {"api_key_id": "key_" + fake(12)}),
    ("non-string-values", {"password": 12345678, "token": None, "secret": True}),
    ("pwd-working-directory", {"pwd": "/home/agent/work", "cwd": "/srv/app"}),
    ("pwd-windows-directory", {"pwd": "C:\\Users\\agent\\work"}),
]


@pytest.mark.parametrize("value", [pytest.param(v, id=i) for i, v in LOOK_ALIKES])
def test_look_alikes_are_not_flagged(value: object) -> None:
    assert scan({"value": value}) == ([], None)
    assert scan({"nested": [{"x": value}]}) == ([], None)


@pytest.mark.parametrize("attributes", [pytest.param(a, id=i) for i, a in KEYED_LOOK_ALIKES])
def test_keyed_look_alikes_are_not_flagged(attributes: dict) -> None:
    assert scan(attributes) == ([], None)


def test_realistic_event_without_secrets() -> None:
    assert scan(REALISTIC_EVENT) == ([], None)


REALISTIC_EVENT = {
    "agent": "research-assistant",
    "run_id": "run_" + MD5,
    "span_id": fake(16, "0123456789abcdef"),
    "model": "claude-3-5-sonnet-20241022",
    "temperature": 0.2,
    "max_tokens": 4096,
    "token_count": 1523,
    "tool": "web_search",
    "arguments": {"query": "renewable energy output in Denmark", "max_results": 10},
    "messages": [
        {"role": "system", "content": "You are a careful research assistant. Cite sources."},
        {"role": "user", "content": "Summarise wind output for 2023: Orsted first, then Vestas."},
    ],
    "result": {"status": "ok", "urls": ["https://www.example.com/reports/2023/annual.pdf"]},
    "tags": ["search", "production", "eu-west-1"],
    "created_at": "2024-05-17T09:31:22.481Z",
}


# --- properties --------------------------------------------------------------------------------
# Alphabets that cannot spell any credential shape: values are lowercase words and digits (no
# "-", "_", ":", "=", "@" or uppercase), keys avoid the letters of every credential name but
# include "/" and "~" so that pointer escaping is exercised.
SAFE_TEXT = st.text(alphabet=string.ascii_lowercase + string.digits + " ", max_size=40)
SAFE_KEYS = st.text(alphabet="bcfghjlmqvz0123456789/~", min_size=1, max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | SAFE_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(SAFE_KEYS, children, max_size=4)
    ),
    max_leaves=25,
)
ATTRIBUTES = st.dictionaries(SAFE_KEYS, JSON_VALUES, max_size=5)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(ATTRIBUTES)
def test_property_no_secret_no_finding(attributes: dict) -> None:
    before = copy.deepcopy(attributes)
    assert scan(attributes) == ([], None)
    assert attributes == before


# (rule, value to plant, the text that must not survive masking, key it must sit under or None,
# whether it may be wrapped in prose). Whole-string forms (decoded payloads) cannot be wrapped.
PLANTABLE: list[tuple[str, str, str, str | None, bool]] = [
    ("aws_access_key_id", AWS_KEY_ID, AWS_KEY_ID, None, True),
    ("aws_secret_access_key", AWS_SECRET, AWS_SECRET, "aws_secret_access_key", False),
    ("github_token", GITHUB_FINE_GRAINED, GITHUB_FINE_GRAINED, None, True),
    ("openai_api_key", OPENAI_PROJECT, OPENAI_PROJECT, None, True),
    ("anthropic_api_key", ANTHROPIC, ANTHROPIC, None, True),
    ("slack_token", SLACK_BOT, SLACK_BOT, None, True),
    ("slack_token", SLACK_WEBHOOK, SLACK_WEBHOOK_PATH, None, True),
    ("jwt", JWT, JWT, None, True),
    ("private_key", RSA_KEY, KEY_BODY, None, True),
    ("password_in_url", f"mysql://root:{URL_PASSWORD}@db:3306/x", URL_PASSWORD, None, True),
    ("bearer_token", f"Bearer {BEARER}", BEARER, None, True),
    ("generic_secret", GENERIC, GENERIC, "db_password", False),
    ("generic_secret", f"apiKey: {GENERIC_2}", GENERIC_2, None, True),
    ("generic_secret", b64(json.dumps({"token": GENERIC})), GENERIC, None, False),
    ("jwt", b64(json.dumps({"jwt": JWT})), JWT, None, False),
]


def containers(value: object, path: tuple = ()) -> list[tuple[object, tuple]]:
    found: list[tuple[object, tuple]] = []
    if isinstance(value, dict):
        found.append((value, path))
        for key, child in value.items():
            found.extend(containers(child, (*path, key)))
    elif isinstance(value, list):
        found.append((value, path))
        for index, child in enumerate(value):
            found.extend(containers(child, (*path, index)))
    return found


def pointer(path: tuple) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def resolve(document: object, json_pointer: str) -> object:
    for token in json_pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(attributes=ATTRIBUTES, data=st.data())
def test_property_planted_secret_is_found_exactly_where_planted(
    attributes: dict, data: st.DataObject
) -> None:
    rule, value, needle, key, wrappable = data.draw(st.sampled_from(PLANTABLE))
    if wrappable and data.draw(st.booleans()):
        value = f"see {value} now"
    container, path = data.draw(st.sampled_from(containers(attributes)))
    if isinstance(container, dict):
        slot = key if key is not None else data.draw(SAFE_KEYS)
        container[slot] = value
        planted_path = (*path, slot)
    else:
        index = data.draw(st.integers(0, len(container)))
        if key is None:
            container.insert(index, value)
            planted_path = (*path, index)
        else:
            container.insert(index, {key: value})
            planted_path = (*path, index, key)
    before = copy.deepcopy(attributes)

    findings, masked = scan(attributes)

    assert findings == [{"rule": rule, "path": pointer(planted_path)}]
    assert masked is not None
    assert needle not in json.dumps(masked)
    assert resolve(masked, pointer(planted_path)) != value
    assert attributes == before


# Fragments from which strings are built to test that the prefilter never misses what the
# precise rules find (a miss there would hide a secret in the fast path).
FRAGMENTS = st.sampled_from(
    [
        "AKIA",
        "ASIA",
        "ghp_",
        "github_pat_",
        "sk-",
        "sk-ant-",
        "sk-proj-",
        "xoxb-",
        "eyJ",
        ".",
        ":",
        "=",
        "//",
        "://",
        "@",
        '"',
        "'",
        "\\",
        " ",
        "\n",
        "-----BEGIN ",
        "PRIVATE KEY",
        "-----",
        "Bearer ",
        "bearer ",
        "BEARER\t",
        "api_key",
        "apiKey",
        "Secret",
        "PASSWORD",
        "token",
        "Token ",
        "Basic ",
        "hooks.slack.com/services/T",
        "/B",
        "_",
        "-",
        "/",
        "+",
    ]
)
RUNS = st.text(alphabet=ALNUM, min_size=1, max_size=48)
TRICKY_TEXT = st.lists(FRAGMENTS | RUNS, max_size=14).map("".join)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(TRICKY_TEXT)
def test_property_prefilter_never_misses_a_precise_match(text: str) -> None:
    if _find_spans(text).rules:
        assert _PREFILTER(text) is not None


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(TRICKY_TEXT, TRICKY_TEXT)
def test_property_scan_agrees_with_per_string_check(first: str, second: str) -> None:
    # The gate looks at all strings joined together; the result must not depend on that.
    together, _ = scan({"a": first, "b": [second]})
    alone_a, _ = scan({"a": first})
    alone_b, _ = scan({"b": [second]})
    assert together == sorted(alone_a + alone_b, key=lambda f: (f["path"], f["rule"]))


def test_a_short_encoded_secret_is_found_every_time_not_only_the_first() -> None:
    # Short base64 values that hold nothing are remembered; one that holds a secret never is.
    encoded = base64.b64encode(b"ghp_" + b"a1B2c3D4" * 4 + b"e5F6").decode()
    clean = base64.b64encode(b"json/plain").decode()
    for _ in range(3):
        findings, masked = scan({"note": encoded, "encoding": clean})
        assert findings == [{"rule": "github_token", "path": "/note"}]
        assert masked == {"note": "[REDACTED:github_token]", "encoding": clean}
