"""Authentication and authorisation of the API: every endpoint x every role, token failures,
the OpenAPI security schemes, and the start-up checks (in-process, real SQLite store and assets)."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi.testclient import TestClient

from personarec.errors import ConfigError
from personarec.personas.store.sqlite import SQLiteStore
from personarec.serve.api import ApiState, create_app
from personarec.serve.assets import ServingAssets
from personarec.serve.auth import JWT_SECRET_ENV, SERVICE_KEYS_ENV, AuthConfig, Authenticator, hash_key
from personarec.serve.config import ServeConfig

SECRET = "s" * 24 + "-test-secret-of-enough-bytes"
KEY = "prk_test-service-key"


@pytest.fixture(scope="module")
def assets(serve_run_dir):
    return ServingAssets.load(serve_run_dir)


@pytest.fixture
def api(assets, tmp_path, monkeypatch):
    monkeypatch.setenv(SERVICE_KEYS_ENV, KEY)
    monkeypatch.setenv(JWT_SECRET_ENV, SECRET)
    store = SQLiteStore(tmp_path / "auth.db")
    state = ApiState(store=store, assets=assets, config=ServeConfig())
    yield TestClient(create_app(state)), state, assets
    store.close()


def _headers(state, role: str, me: str, other: str) -> dict[str, str]:
    auth = state.auth
    return {
        "anonymous": {},
        "bad_key": {"X-API-Key": "prk_wrong"},
        "service": {"X-API-Key": KEY},
        "user_own": {"Authorization": f"Bearer {auth.mint(me)}"},
        "user_other": {"Authorization": f"Bearer {auth.mint(other)}"},
        "admin": {"Authorization": f"Bearer {auth.mint('operator-7', admin=True)}"},
    }[role]


ROLES = ["anonymous", "bad_key", "service", "user_own", "user_other", "admin"]
#: endpoint -> expected status per role (the policy of personarec.serve.auth, written out)
MATRIX = {
    "GET /v1/topics": [401, 401, 200, 200, 200, 200],
    "GET /v1/users/{u}/recommendations": [401, 401, 200, 200, 403, 200],
    "POST /v1/events": [401, 401, 202, 403, 403, 202],
    "GET /v1/users/{u}/persona": [401, 401, 403, 200, 403, 200],
    "PUT /v1/users/{u}/persona": [401, 401, 403, 200, 403, 200],
    "DELETE /v1/users/{u}/persona": [401, 401, 403, 204, 403, 204],
    "GET /healthz": [200] * 6,
    "GET /metrics": [200] * 6,
    "GET /openapi.json": [200] * 6,
}


@pytest.mark.parametrize("endpoint", list(MATRIX))
@pytest.mark.parametrize("role", ROLES)
def test_each_endpoint_for_each_role(api, endpoint, role):
    client, state, assets = api
    me, other = str(assets.split.user_ids[0]), str(assets.split.user_ids[1])
    method, path = endpoint.split(" ")
    kwargs: dict = {"headers": _headers(state, role, me, other)}
    if method == "POST":
        kwargs["json"] = {"events": [{"user_id": me, "item_id": str(assets.split.item_ids[0]), "timestamp": 1_700_000_000}]}
    if method == "PUT":
        kwargs["json"] = {"added_topics": [assets.space.fine_names[0]]}
    r = client.request(method, path.replace("{u}", me), **kwargs)
    expected = MATRIX[endpoint][ROLES.index(role)]
    assert r.status_code == expected, (endpoint, role, r.status_code, r.text)
    if expected == 401:
        assert r.json()["detail"] and "WWW-Authenticate" in r.headers
    if expected == 403:
        assert "may not" in r.json()["detail"] or "cannot access" in r.json()["detail"]
    if method == "DELETE" and expected == 204:  # really erased: the same credentials now get 404
        assert client.get(f"/v1/users/{me}/persona", headers=kwargs["headers"]).status_code == 404


def test_refused_requests_change_nothing(api):
    client, state, assets = api
    me, other = str(assets.split.user_ids[0]), str(assets.split.user_ids[1])
    h = _headers(state, "user_other", me, other)
    item = str(assets.split.item_ids[0])
    client.post("/v1/events", headers=h, json={"events": [{"user_id": me, "item_id": item, "timestamp": 1}]})
    client.put(f"/v1/users/{me}/persona", headers=h, json={"added_topics": [assets.space.fine_names[0]]})
    client.delete(f"/v1/users/{me}/persona", headers=h)
    assert state.store.user_state(me) is None and state.store.get_edits(me) is None  # nothing stored, nothing erased


def _token(claims: dict, key: str = SECRET, alg: str = "HS256") -> str:
    base = {"sub": "1", "aud": "personarec", "exp": int(time.time()) + 60}
    return jwt.encode({**base, **claims}, key, algorithm=alg)


def _bad_token(kind: str) -> str:
    """Built when the test runs (a token made at collection time could expire before it runs)."""
    now = int(time.time())
    return {
        "expired": lambda: _token({"exp": now - 3600}),
        "signature": lambda: _token({}, key="another-secret-that-is-long-enough-1234567"),
        "audience": lambda: _token({"aud": "someone-else"}),
        "none": lambda: jwt.encode({"sub": "1", "aud": "personarec", "exp": now + 60}, None, algorithm="none"),
        "garbage": lambda: "not.a.jwt",
    }[kind]()


@pytest.mark.parametrize(
    "kind, message",
    [
        ("expired", "expired"),
        ("signature", "signature"),
        ("audience", "audience"),
        ("none", "alg value is not allowed"),
        ("garbage", "invalid token"),
    ],
)
def test_bad_tokens_are_401_with_a_reason(api, kind, message):
    client, _, assets = api
    user = str(assets.split.user_ids[0])
    r = client.get(f"/v1/users/{user}/persona", headers={"Authorization": f"Bearer {_bad_token(kind)}"})
    assert r.status_code == 401, r.text
    assert message in r.json()["detail"].lower()
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_without_expiry_is_refused(api):
    client, _, _ = api
    token = jwt.encode({"sub": "1", "aud": "personarec"}, SECRET, algorithm="HS256")
    r = client.get("/v1/topics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "exp" in r.json()["detail"]


def test_openapi_declares_the_security_schemes(api):
    client, _, _ = api
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ServiceKey"] == {**schemes["ServiceKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["UserToken"]["type"] == "http" and schemes["UserToken"]["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert {"ServiceKey": []} in op["security"] and {"UserToken": []} in op["security"], (path, method)
                assert {"401", "403"} <= set(op["responses"]), (path, method)
            else:
                assert "security" not in op, (path, method)


def test_service_keys_by_digest_and_start_up_checks(tmp_path):
    cfg = AuthConfig(service_key_sha256=[hash_key("k1")])
    auth = Authenticator(cfg, environ={})
    assert auth.authenticate("k1", None).role == "service"
    with pytest.raises(ConfigError, match="no credentials are configured"):
        Authenticator(AuthConfig(), environ={})
    with pytest.raises(ConfigError, match="at least 32"):
        Authenticator(AuthConfig(), environ={JWT_SECRET_ENV: "short"})
    with pytest.raises(ConfigError, match="not found"):
        Authenticator(AuthConfig(jwt_public_key_file=tmp_path / "missing.pem"), environ={})
    with pytest.raises(ValueError, match="never 'none'"):
        AuthConfig(jwt_algorithms=["none"])
    with pytest.raises(ValueError, match="SHA-256"):
        AuthConfig(service_key_sha256=["abc"])
    assert Authenticator(AuthConfig(mode="off"), environ={}).summary == "off"


def test_public_key_tokens_from_an_identity_provider(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "idp.pem").write_bytes(pem)
    auth = Authenticator(AuthConfig(jwt_public_key_file=tmp_path / "idp.pem", jwt_algorithms=["ES256"], issuer="https://idp"), environ={})
    good = jwt.encode({"sub": "42", "aud": "personarec", "iss": "https://idp", "exp": int(time.time()) + 60}, private, algorithm="ES256")
    assert auth.authenticate(None, good).subject == "42"
    forged = jwt.encode({"sub": "42", "aud": "personarec", "iss": "https://idp", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(Exception, match="invalid token"):
        auth.authenticate(None, forged)  # an HMAC token signed with a guessable 'public key' is not accepted


def test_auth_off_is_explicit_and_reported(assets, tmp_path, monkeypatch):
    monkeypatch.delenv(SERVICE_KEYS_ENV, raising=False)
    monkeypatch.delenv(JWT_SECRET_ENV, raising=False)
    store = SQLiteStore(tmp_path / "off.db")
    try:
        with pytest.raises(ConfigError, match="serve.auth.mode=off"):
            ApiState(store=store, assets=assets, config=ServeConfig())
        client = TestClient(create_app(ApiState(store=store, assets=assets, config=ServeConfig.model_validate({"auth": {"mode": "off"}}))))
        assert client.get("/healthz").json()["auth"] == "off"
        user = str(assets.split.user_ids[0])
        assert client.get(f"/v1/users/{user}/persona").status_code == 200
    finally:
        store.close()


@pytest.mark.slow
def test_server_without_credentials_refuses_to_start(serve_run_dir, tmp_path, monkeypatch):
    from personarec.serve.launch import ServerProcess

    monkeypatch.delenv(SERVICE_KEYS_ENV, raising=False)
    monkeypatch.delenv(JWT_SECRET_ENV, raising=False)
    srv = ServerProcess(serve_run_dir, args=["--workers", "0", "--store", f"sqlite:///{tmp_path / 'x.db'}"])
    with pytest.raises(RuntimeError, match="exited with 2") as err:
        srv.start(timeout_s=120)
    assert "no credentials are configured" in str(err.value)
    srv = ServerProcess(
        serve_run_dir, args=["--workers", "0", "--store", f"sqlite:///{tmp_path / 'y.db'}"], sets=["serve.auth.mode=off"],
        log_path=tmp_path / "off.log",
    ).start(timeout_s=120)
    try:
        assert srv.health()["auth"] == "off"
    finally:
        srv.stop()
    assert "AUTHENTICATION IS OFF" in (tmp_path / "off.log").read_text()
