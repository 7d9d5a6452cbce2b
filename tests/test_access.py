"""seatrial.access: the credentials file (hashed passwords, roles), bad input refused, malformed files named, identities."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import time

import pytest

from seatrial.access import (
    AccessError,
    CredentialsFileError,
    Identity,
    InvalidUserError,
    WeakPasswordError,
    add_user,
    authenticate,
    current_identity,
    hash_password,
    local_identity,
    read_users,
    remove_user,
    session_identity,
    verify_password,
)

ANN, ANN_PW = "a.hansen", "north-sea-2026"
BO, BO_PW = "b.olsen", "baltic-sea-2026"


@pytest.fixture
def cred(tmp_path):
    path = tmp_path / "conf" / "users.toml"
    add_user(path, ANN, ANN_PW, "approver")
    add_user(path, BO, BO_PW, "viewer")
    return path


def test_users_and_roles_read_back(cred):
    users = read_users(cred)
    assert set(users) == {ANN, BO}
    assert users[ANN] == Identity(ANN, frozenset({"viewer", "approver"})) and users[ANN].can_approve
    assert users[BO] == Identity(BO, frozenset({"viewer"})) and not users[BO].can_approve


def test_file_holds_salted_hashes_only_and_is_private(cred):
    text = cred.read_text()
    assert ANN_PW not in text and BO_PW not in text
    assert text.count("scrypt$") == 2
    assert cred.stat().st_mode & 0o777 == 0o600
    # the same password for two users gives two different hashes (per-user salt)
    add_user(cred, "c.berg", ANN_PW, "viewer")
    hashes = [line for line in cred.read_text().splitlines() if line.startswith("password")]
    assert len(set(hashes)) == 3
    assert [p.name for p in cred.parent.iterdir()] == ["users.toml"]   # no temporary files left behind


def test_authenticate(cred):
    assert authenticate(cred, ANN, ANN_PW) == Identity(ANN, frozenset({"viewer", "approver"}))
    assert authenticate(cred, BO, BO_PW).roles == {"viewer"}
    assert authenticate(cred, ANN, BO_PW) is None          # someone else's password
    assert authenticate(cred, ANN, ANN_PW.upper()) is None
    assert authenticate(cred, "nobody", ANN_PW) is None
    assert authenticate(cred, ANN, "") is None


def test_replace_and_remove(cred):
    with pytest.raises(AccessError, match="already exists; pass replace=True"):
        add_user(cred, BO, "a-new-password-1", "approver")
    assert authenticate(cred, BO, BO_PW) is not None
    add_user(cred, BO, "a-new-password-1", "approver", replace=True)
    assert authenticate(cred, BO, BO_PW) is None
    assert authenticate(cred, BO, "a-new-password-1").can_approve
    remove_user(cred, BO)
    assert set(read_users(cred)) == {ANN}
    with pytest.raises(AccessError, match=re.escape("there is no user 'b.olsen'")):
        remove_user(cred, BO)


@pytest.mark.parametrize("name, password, role, error, message", [
    ("", "long-enough-pass", "viewer", InvalidUserError, "user name is empty"),
    ("   ", "long-enough-pass", "viewer", InvalidUserError, "user name is empty"),
    ("ann smith", "long-enough-pass", "viewer", InvalidUserError, "no spaces"),
    ("<script>alert(1)</script>", "long-enough-pass", "viewer", InvalidUserError, "not allowed"),
    ("x" * 65, "long-enough-pass", "viewer", InvalidUserError, "1 to 64"),
    ("carl", "long-enough-pass", "admin", InvalidUserError, "role 'admin' is unknown: it must be one of viewer, approver"),
    ("carl", "long-enough-pass", "", InvalidUserError, "unknown"),
    ("carl", "", "viewer", WeakPasswordError, "empty"),
    ("carl", "short-pw", "viewer", WeakPasswordError, "has 8 characters; it needs at least 12"),
    ("carl", "carl-the-captain", "viewer", WeakPasswordError, "contains the user name"),
    ("carl", "aaaaaaaaaaaaaaaa", "viewer", WeakPasswordError, "fewer than 5 different characters"),
])
def test_bad_input_refused_and_file_untouched(cred, name, password, role, error, message):
    before = cred.read_bytes()
    with pytest.raises(error, match=re.escape(message)):
        add_user(cred, name, password, role)
    assert cred.read_bytes() == before


def test_bad_input_does_not_create_a_file(tmp_path):
    with pytest.raises(WeakPasswordError):
        add_user(tmp_path / "users.toml", "carl", "", "viewer")
    assert not (tmp_path / "users.toml").exists()


def _entry(name: str, role: str, password: str) -> str:
    return f'[users."{name}"]\nrole = "{role}"\npassword = "{password}"\n'


@pytest.mark.parametrize("text, message", [
    ('[users."a.hansen"]\nrole = "approver"\npassword = "scrypt$1\n', "not valid TOML"),
    ('[users."a.hansen"]\nrole = approver\n', "at line 2"),
    (_entry("a.hansen", "approver", "HASH") + "\n" + _entry("b.olsen", "captain", "HASH"),
     "entry [users.\"b.olsen\"] (line 5): role 'captain' is unknown"),
    (_entry("a.hansen", "approver", "HASH") + "\n" + _entry("b.olsen", "viewer", "hunter2-hunter2"),
     "entry [users.\"b.olsen\"] (line 5): not a password hash"),
    ('[users."a.hansen"]\nrole = "viewer"\n', "entry [users.\"a.hansen\"] (line 1): must have exactly the keys 'role' and 'password', has role"),
    ('[users."a.hansen"]\nrole = "viewer"\npassword = "HASH"\nadmin = true\n', "has admin, password, role"),
    ('[users."a b"]\nrole = "viewer"\npassword = "HASH"\n', "entry [users.\"a b\"] (line 1): user name 'a b' is not allowed"),
    ('users = "everyone"\n', "'users' must be a table"),
    ('[users.ann]\nrole = "viewer"\npassword = "HASH"\n[admins]\nann = true\n', "unknown top-level entry 'admins'"),
    ('[users.ann]\nrole = "viewer"\npassword = "scrypt$3$8$1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA=="\n', "scrypt parameters out of range"),
])
def test_malformed_file_names_file_and_entry(tmp_path, text, message):
    path = tmp_path / "users.toml"
    path.write_text(text.replace("HASH", hash_password("some-password-1")))
    before = path.read_bytes()
    with pytest.raises(CredentialsFileError) as e:
        read_users(path)
    assert str(path) in str(e.value)
    assert message in str(e.value)
    with pytest.raises(CredentialsFileError):   # logging in against a broken file is an error too, not a silent "wrong password"
        authenticate(path, "a.hansen", "some-password-1")
    with pytest.raises(CredentialsFileError):   # and so is adding to it: a broken file is never overwritten
        add_user(path, "c.berg", "long-enough-pass", "viewer")
    assert path.read_bytes() == before


def test_missing_file(tmp_path):
    with pytest.raises(CredentialsFileError, match="no credentials file here"):
        read_users(tmp_path / "nope.toml")


def test_empty_file_lists_nobody(tmp_path):
    (tmp_path / "users.toml").write_text("# nobody yet\n")
    assert read_users(tmp_path / "users.toml") == {}
    assert authenticate(tmp_path / "users.toml", "a.hansen", ANN_PW) is None


def test_hand_written_pbkdf2_hash_is_accepted(tmp_path):
    salt = os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", b"north-sea-2026", salt, 600_000)
    stored = f"pbkdf2_sha256$600000${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"
    assert verify_password("north-sea-2026", stored) and not verify_password("north-sea-2027", stored)
    (tmp_path / "users.toml").write_text(_entry(ANN, "approver", stored))
    assert authenticate(tmp_path / "users.toml", ANN, "north-sea-2026").can_approve


def test_identity_renders_inert():
    who = Identity("<img src=x onerror=alert(1)>", frozenset({"viewer"}))
    assert "<img" not in who._repr_html_() and "&lt;img" in who._repr_html_()
    assert Identity("x", {"viewer"}).roles == frozenset({"viewer"})   # any collection of roles becomes a frozenset


def test_local_identity(monkeypatch):
    monkeypatch.setenv("SEATRIAL_USER", "c.berg")
    assert local_identity() == Identity("c.berg", frozenset({"viewer", "approver"}))
    monkeypatch.setenv("SEATRIAL_USER", "<b>boss</b>")
    with pytest.raises(AccessError, match="SEATRIAL_USER: user name"):
        local_identity()
    monkeypatch.delenv("SEATRIAL_USER")
    me = local_identity()
    assert me.name and me.can_approve and me.roles == {"viewer", "approver"}


def test_session_identity_outside_a_server_session(cred, monkeypatch):
    monkeypatch.setenv("SEATRIAL_USER", "c.berg")
    assert session_identity(None).name == "c.berg"
    assert session_identity(cred).name == "c.berg"   # a notebook or the CLI acts as the local user


def test_importing_access_does_not_import_panel():
    import subprocess
    import sys
    code = "import sys, seatrial.access; print('panel' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_roles_are_read_again_when_it_matters(cred):
    "A session keeps the identity it opened with; a decision asks the file again, so a demoted approver cannot decide."
    opened = authenticate(cred, ANN, ANN_PW)
    assert current_identity(opened, cred).can_approve
    add_user(cred, ANN, ANN_PW, "viewer", replace=True)
    assert opened.can_approve and not current_identity(opened, cred).can_approve
    remove_user(cred, ANN)
    assert current_identity(opened, cred) == Identity(ANN, frozenset())
    assert current_identity(opened, None) is opened   # single-user mode: nobody to ask


@pytest.fixture
def kept(monkeypatch):
    "Keep even a file written a moment ago parsed (the tests cannot wait two seconds for it to settle)."
    from seatrial import access, core
    monkeypatch.setattr(core, "_SETTLED_NS", 0)
    monkeypatch.setattr(access, "_parsed", {})
    return access


def test_unchanged_file_is_not_parsed_again(cred, kept, monkeypatch):
    assert read_users(cred)[ANN].can_approve
    monkeypatch.setattr(kept, "_parse", lambda path, text: pytest.fail("parsed again"))
    assert read_users(cred)[ANN].can_approve and authenticate(cred, BO, BO_PW) is not None


def test_role_change_is_seen_at_once(cred, kept):
    assert read_users(cred)[BO].roles == {"viewer"}
    add_user(cred, BO, BO_PW, "approver", replace=True)   # atomic replace: a new inode
    assert read_users(cred)[BO].can_approve
    remove_user(cred, BO)
    assert set(read_users(cred)) == {ANN}


def test_edit_in_place_to_the_same_size_and_mtime_is_seen(cred, kept):
    "An editor that swaps two roles in place and puts the mtime back: only the ctime moves, and that is enough."
    assert read_users(cred)[ANN].can_approve and not read_users(cred)[BO].can_approve
    before, text = cred.stat(), cred.read_text()
    swapped = text.replace('role = "approver"', "@A").replace('role = "viewer"', 'role = "approver"').replace("@A", 'role = "viewer"')
    assert len(swapped) == len(text) and swapped != text
    time.sleep(0.05)   # past a tick of the filesystem's clock
    with open(cred, "r+") as f: f.write(swapped)
    os.utime(cred, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = cred.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert not read_users(cred)[ANN].can_approve and read_users(cred)[BO].can_approve


def test_failures_are_never_kept(cred, kept):
    good = cred.read_text()
    assert set(read_users(cred)) == {ANN, BO}
    cred.write_text(good + "[users.x\n")
    for _ in range(2):
        with pytest.raises(CredentialsFileError, match="not valid TOML"):
            read_users(cred)
    cred.unlink()
    for _ in range(2):
        with pytest.raises(CredentialsFileError, match="no credentials file here"):
            read_users(cred)
    cred.write_text(good)
    assert set(read_users(cred)) == {ANN, BO}


def test_kept_users_are_not_changed_by_callers(cred, kept):
    read_users(cred)
    users = kept._read(cred)
    users.clear()
    assert set(read_users(cred)) == {ANN, BO}
