"""The record of the last verified no-op: digests that never meet for
different inputs, and a record file that is ours or no record at all."""

import json
import math
import os

import pytest
import zimbra_fw_noop as noop
from hypothesis import given, settings
from hypothesis import strategies as st

RECORD = {
    "inputs": "i" * 64,
    "asked": [["Zimbra", None]],
    "backend": "ufw",
    "zone": None,
    "firewall": "f" * 64,
    "open_ports": {"public": ["25/tcp"]},
    "comments": {"profile": "done", "rules": "done", "firewall": "done"},
}


@pytest.mark.parametrize(
    "one, other",
    [
        (("ab", "c"), ("a", "bc")),
        ("1", 1),
        (1, True),
        (None, "None"),
        ("", b""),
        ([], ""),
        ((("a",),), ("a",)),
        ((None, True), (None, "True")),
        ("x", ["x"]),
    ],
)
def test_different_reads_have_different_digests(one, other):
    assert noop.digest(one) != noop.digest(other)


def test_a_digest_is_of_the_value_not_of_its_container_type():
    assert noop.digest(("a", None, 1)) == noop.digest(["a", None, 1])
    with pytest.raises(TypeError):
        noop.digest({"a": 1})


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(PLAIN, PLAIN)
def test_inputs_digests_meet_only_for_equal_inputs(one, other):
    same = json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)
    assert (noop.inputs_digest("code", one, {}) == noop.inputs_digest("code", other, {})) == same


@pytest.mark.parametrize(
    "pillar",
    [{1: "a"}, {"only_from": {25: ["10.0.0.0/24"]}}, [{True: 1}], {"a": object()}, {"a": b"x"}, {"a": math.nan}],
    ids=["int key", "nested int key", "bool key", "object", "bytes", "nan"],
)
def test_inputs_json_cannot_tell_apart_make_no_digest(pillar):
    assert noop.inputs_digest("code", pillar, {}) is None


def test_a_character_and_the_surrogates_that_escape_it_differ():
    character, surrogates = {"title": "Zimbra \U0001f600"}, {"title": "Zimbra \ud83d\ude00"}
    assert noop.inputs_digest("code", character, {}) != noop.inputs_digest("code", surrogates, {})


def test_the_code_facts_and_pillar_each_count():
    digests = {
        noop.inputs_digest("code", {"a": 1}, {"f": 1}),
        noop.inputs_digest("code2", {"a": 1}, {"f": 1}),
        noop.inputs_digest("code", {"a": 2}, {"f": 1}),
        noop.inputs_digest("code", {"a": 1}, {"f": 2}),
    }
    assert len(digests) == 4


def test_the_code_digest_is_of_names_and_bytes(tmp_path):
    one, other = tmp_path / "zimbra_fw_a.py", tmp_path / "zimbra_fw_b.py"
    one.write_text("A = 1\n")
    other.write_text("B = 1\n")
    before = noop.files_digest([str(one), str(other)])
    assert noop.files_digest([str(other), str(one)]) == before
    other.write_text("B = 2\n")
    assert noop.files_digest([str(one), str(other)]) != before


def test_a_record_is_saved_root_only_and_loaded(tmp_path):
    directory = str(tmp_path / "zimbra_fw")
    noop.save(directory, RECORD)
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(directory, noop.FILE_NAME)).st_mode & 0o777 == 0o600
    assert noop.load(directory) == {"version": noop.VERSION, **RECORD}


@pytest.mark.parametrize(
    "spoil",
    ["missing", "not json", "a list", "a key less", "a key more", "old version", "group readable", "symlink"],
)
def test_a_record_that_is_not_ours_or_not_whole_is_none(tmp_path, spoil):
    directory = str(tmp_path / "zimbra_fw")
    noop.save(directory, RECORD)
    path = os.path.join(directory, noop.FILE_NAME)
    record = {"version": noop.VERSION, **RECORD}
    text = {
        "not json": "{",
        "a list": "[]",
        "a key less": json.dumps({k: v for k, v in record.items() if k != "asked"}),
        "a key more": json.dumps(dict(record, extra=1)),
        "old version": json.dumps(dict(record, version=0)),
    }.get(spoil)
    if text is not None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    elif spoil == "missing":
        os.unlink(path)
    elif spoil == "group readable":
        os.chmod(path, 0o640)
    elif spoil == "symlink":
        os.rename(path, path + ".real")
        os.symlink(path + ".real", path)
    assert noop.load(directory) is None


def test_a_record_nested_too_deep_for_json_or_of_a_bool_version_is_none(tmp_path):
    directory = str(tmp_path / "zimbra_fw")
    noop.save(directory, RECORD)
    path = os.path.join(directory, noop.FILE_NAME)
    for text in ("[" * 100000 + "]" * 100000, json.dumps(dict(RECORD, version=True))):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        assert noop.load(directory) is None


def test_a_record_directory_that_is_a_symlink_is_refused(tmp_path):
    real = tmp_path / "elsewhere"
    noop.save(str(real), RECORD)
    os.symlink(real, tmp_path / "zimbra_fw")
    assert noop.load(str(tmp_path / "zimbra_fw")) is None
    with pytest.raises(RuntimeError):
        noop.save(str(tmp_path / "zimbra_fw"), RECORD)


@pytest.fixture
def code(tmp_path, monkeypatch):
    """A core of one file and a face, as this process imported them: (core, face, face_at_import)."""
    core, face = tmp_path / "zimbra_fw_core.py", tmp_path / "face.py"
    core.write_text("A = 1\n")
    face.write_text("B = 1\n")
    monkeypatch.setattr(noop, "HERE", str(tmp_path))
    monkeypatch.setattr(noop, "CORE_AT_IMPORT", noop.files_digest([str(core)]))
    monkeypatch.setattr(noop, "_MIXED", [])
    return core, face, noop.files_digest([str(face)])


def test_code_on_disk_that_is_not_the_code_running_has_no_digest(code):
    core, face, face_at_import = code
    running = noop.code_digest(str(face), face_at_import)
    assert running is not None and noop.code_digest(str(face), face_at_import) == running
    face.write_text("B = 2\n")  # the face reloaded would be another: not yet
    assert noop.code_digest(str(face), face_at_import) is None
    face.write_text("B = 1\n")
    core.write_text("A = 2\n")  # a new core on disk, the old one in memory
    assert noop.code_digest(str(face), face_at_import) is None
    core.unlink()  # gone while listed, as during a sync
    assert noop.files_digest([str(core)]) is None and noop.code_digest(str(face), face_at_import) is None


def test_a_backend_imported_from_another_core_leaves_no_digest_until_restart(code):
    core, face, face_at_import = code
    noop.imported_later()  # the same core: nothing said
    assert noop.code_digest(str(face), face_at_import) is not None
    core.write_text("A = 2\n")  # synced: a backend imported now is of the new core
    noop.imported_later()
    core.write_text("A = 1\n")  # and back: the process still holds both
    assert noop.code_digest(str(face), face_at_import) is None


@pytest.mark.parametrize(
    "spoil",
    [
        {"asked": [["Zimbra"]]},
        {"asked": [[1, None]]},
        {"asked": "Zimbra"},
        {"comments": {"profile": 1}},
        {"comments": []},
        {"open_ports": []},
        {"firewall": None},
        {"zone": 5},
    ],
    ids=repr,
)
def test_a_record_of_another_shape_is_none(tmp_path, spoil):
    directory = str(tmp_path / "zimbra_fw")
    noop.save(directory, dict(RECORD, **spoil))
    assert noop.load(directory) is None
