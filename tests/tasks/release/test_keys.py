"""The release signing key: generate, load (file or environment), sign, verify; errors that name the
file or variable and never quote key material."""

from __future__ import annotations

import base64
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from tasks.release import keys
from tasks.stage import StageError


def test_generate_writes_a_private_pem_0600_and_a_one_line_public_key(tmp_path):
    priv, pub = tmp_path / "k" / "sign.pem", tmp_path / "k" / "sign.pub"
    kid = keys.generate(priv, pub)
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    line = pub.read_text()
    assert line.endswith("\n") and line.count("\n") == 1
    prefix, b64 = line.split()
    assert prefix == "ed25519" and len(base64.b64decode(b64)) == 32
    key = keys.load_private(priv)
    assert keys.key_id(key.public_key()) == kid == keys.key_id(keys.load_public(pub))
    assert len(kid) == 16 and int(kid, 16) >= 0


def test_generate_refuses_to_replace_a_key_unless_forced(tmp_path):
    priv, pub = tmp_path / "sign.pem", tmp_path / "sign.pub"
    first = keys.generate(priv, pub)
    with pytest.raises(StageError, match="exists.*--force"):
        keys.generate(priv, pub)
    assert keys.key_id(keys.load_public(pub)) == first
    assert keys.generate(priv, pub, force=True) != first


def test_keygen_command(tmp_path, capsys):
    out = tmp_path / "sign.pem"
    keys.main(["--out", str(out)])
    printed = capsys.readouterr().out
    kid = keys.key_id(keys.load_public(tmp_path / "sign.pub"))
    assert kid in printed and "BEGIN" not in printed
    with pytest.raises(SystemExit) as e:
        keys.main(["--out", str(out)])
    assert e.value.code == 1
    assert capsys.readouterr().err.startswith("edgeforge keygen: error:")


def test_sign_and_verify(tmp_path):
    keys.generate(tmp_path / "a.pem", tmp_path / "a.pub")
    keys.generate(tmp_path / "b.pem", tmp_path / "b.pub")
    key, pub = keys.load_private(tmp_path / "a.pem"), keys.load_public(tmp_path / "a.pub")
    data = b"manifest bytes"
    sig = keys.sign(key, data)
    assert keys.verify(pub, data, sig) and keys.verify(pub, data, sig + "\n")
    assert not keys.verify(pub, b"manifest byteS", sig)
    raw = bytearray(base64.b64decode(sig))
    raw[5] ^= 1
    assert not keys.verify(pub, data, base64.b64encode(bytes(raw)).decode())
    assert not keys.verify(keys.load_public(tmp_path / "b.pub"), data, sig)
    assert not keys.verify(pub, data, "not base64!")


def test_the_environment_overrides_the_key_file(tmp_path, monkeypatch):
    keys.generate(tmp_path / "file.pem", tmp_path / "file.pub")
    keys.generate(tmp_path / "env.pem", tmp_path / "env.pub")
    monkeypatch.setenv(keys.ENV, (tmp_path / "env.pem").read_text())
    key = keys.load_private(tmp_path / "file.pem")
    assert keys.key_id(key.public_key()) == keys.key_id(keys.load_public(tmp_path / "env.pub"))
    # the env alone is enough: no file needed
    assert keys.load_private(tmp_path / "missing.pem") is not None


def test_errors_name_the_source_and_never_quote_the_key(tmp_path, monkeypatch):
    with pytest.raises(StageError, match=r"EDGEFORGE_SIGNING_KEY is not set.*missing\.pem.*edgeforge keygen"):
        keys.load_private(tmp_path / "missing.pem")
    keys.generate(tmp_path / "k.pem", tmp_path / "k.pub")
    pem = (tmp_path / "k.pem").read_text()
    broken = pem.replace(pem.splitlines()[1], pem.splitlines()[1][::-1])
    monkeypatch.setenv(keys.ENV, broken)
    with pytest.raises(StageError) as e:
        keys.load_private(tmp_path / "k.pem")
    assert "environment variable EDGEFORGE_SIGNING_KEY" in str(e.value)
    assert pem.splitlines()[1][:20] not in str(e.value) and broken.splitlines()[1][:20] not in str(e.value)
    monkeypatch.delenv(keys.ENV)
    (tmp_path / "k.pub").write_text("ssh-ed25519 AAAA\n")
    with pytest.raises(StageError, match="k.pub is not an Ed25519 public key"):
        keys.load_public(tmp_path / "k.pub")
    with pytest.raises(StageError, match="no public key at"):
        keys.load_public(tmp_path / "none.pub")


def test_a_key_of_another_type_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    p = tmp_path / "ec.pem"
    p.write_bytes(
        other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(StageError, match="not an Ed25519 private key"):
        keys.load_private(p)
