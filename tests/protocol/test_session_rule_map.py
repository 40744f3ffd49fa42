"""The session module's opening rule map stays true: every function it names exists,
and every test it names exists in the file it names (one row per rule of §4)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import libp2p_introspection.protocol.session as session_module

ROOT = Path(__file__).resolve().parents[2]


def _rows() -> list[tuple[str, str, str]]:
    """(section, functions, tests) of every row, continuation lines joined."""
    doc = session_module.__doc__ or ""
    lines = doc[doc.index("=====  ") :].splitlines()
    header = lines[1]
    function_at, test_at = header.index("function"), header.index("test")
    rows: list[list[str]] = []
    for line in lines[3:]:
        if line.startswith("====="):
            break
        section = line[:7].strip()
        function, test = line[function_at:test_at], line[test_at:]
        if section:
            rows.append([section, function, test])
        else:
            rows[-1][1] += " " + function
            rows[-1][2] += " " + test
    return [(section, function, test) for section, function, test in rows]


def _lookup(dotted: str) -> object:
    """``server.hub.Hub.publish_snapshot`` (under libp2p_introspection) or ``Session._hold``
    (in the session module)."""
    parts = dotted.split(".")
    if parts[0] in {"server", "abc"}:
        for split in range(len(parts), 0, -1):
            try:
                owner: object = importlib.import_module(
                    "libp2p_introspection." + ".".join(parts[:split])
                )
            except ImportError:
                continue
            for part in parts[split:]:
                owner = getattr(owner, part)
            return owner
        raise AssertionError(dotted)
    owner = session_module
    for part in parts:
        owner = getattr(owner, part)
    return owner


def test_every_section_of_4_has_rows():
    assert {section for section, _, _ in _rows()} == {f"4.{n}" for n in range(1, 11)}


def test_every_function_named_exists():
    for section, functions, _ in _rows():
        last_class: object = session_module.Session
        for name in re.findall(r"[A-Za-z_][\w.]*", functions):
            if "." in name or name[0].isupper():
                found = _lookup(name)
                if "." in name:
                    owner = _lookup(name.rpartition(".")[0])
                    last_class = owner if isinstance(owner, type) else last_class
                elif isinstance(found, type):
                    last_class = found
            else:
                found_here = hasattr(last_class, name) or hasattr(session_module, name)
                assert found_here, (section, name, last_class)


def test_every_test_named_exists_in_its_file():
    count = 0
    for section, _, tests in _rows():
        for ref in tests.replace(";", " ").split():
            path, _, name = ref.rpartition("::")
            if path.startswith("tests/"):
                file = ROOT / path
            elif path == "e2e":
                file = ROOT / "tests/server/test_server_e2e.py"
            else:
                file = ROOT / "tests/protocol" / (path or "test_session.py")
            assert re.search(rf"^(async )?def {name}\(", file.read_text(), re.M), (section, ref)
            count += 1
    assert count >= len(_rows())


# Completeness against the contract ----------------------------------------------
#
# Criterion: PROTOCOL.md §4 is cut into sentences (at "." or ";" followed by a
# capital, a backquote or a bullet's dash; markup dropped). Every sentence of a
# subsection must be claimed by at least one row of that subsection, and every row
# must claim at least one sentence. A row claims the sentences listed for it below,
# each by the words it starts with; a claim must start exactly one sentence.
# So a rule added to §4 fails this test until a row (with its function and test)
# claims it, and a row with no sentence behind it fails too.

# The specification is found by the ``spec_path`` fixture (tests/conftest.py).

#: (section, the row's rule, as its first line reads) -> the sentences it claims.
CLAIMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("4.1", "numbered 1, 2, 3, … on one clock, one at start"): (
        "The server produces snapshots on one server-wide clock", "It produces one at start-up"),
    ("4.1", "encoded once, bytes shared by every session"): (
        "The server produces snapshots on one server-wide clock",),
    ("4.1", "each snapshot at most once, cursor only rises"): (
        "Each session keeps a cursor", "Every State sent to a session",
        "So each snapshot reaches a client at most once"),
    ("4.1", "state push every k-th snapshot (k rounded up)"): (
        "A session's own state_snapshot_interval_ms",),
    ("4.2", "Runtime, then the latest snapshot, on connect"): ("Before anything else",),
    ("4.3", "nothing is sent unasked"): ("REQUEST+STATE is the client's",),
    ("4.3", "ready: newest above the cursor at once"): (
        "REQUEST+STATE is the client's", "If a snapshot above the cursor exists"),
    ("4.3", "ready with none newer: waiting, then the next"): (
        "If a snapshot above the cursor exists",),
    ("4.3", "ready while waiting changes nothing"): ("A ready signal that arrives",),
    ("4.3", "REQUEST RUNTIME at once, never an OK"): (
        "A successful REQUEST", "REQUEST+RUNTIME sends the Runtime at once"),
    ("4.3", "a Runtime that grew: sent from then on"): ("REQUEST+RUNTIME sends the Runtime",),
    ("4.3", "REQUEST EVENTS is an ERR"): ("REQUEST+EVENTS is an ERR",),
    ("4.3", "pull works with push on or paused"): ("Pull works whether or not",),
    ("4.4", "PUSH_ENABLE/DISABLE idempotent, OK"): (
        "PUSH_ENABLE+EVENTS subscribes", "PUSH_ENABLE+STATE to every k-th",
        "PUSH_DISABLE unsubscribes", "Both are idempotent"),
    ("4.4", "PUSH_* RUNTIME is an ERR"): ("PUSH_ENABLE/PUSH_DISABLE+RUNTIME is an ERR",),
    ("4.4", "events only to subscribers"): ("PUSH_ENABLE+EVENTS subscribes",),
    ("4.4", "the first event of an undeclared type carries"): ("PUSH_ENABLE+EVENTS subscribes",),
    ("4.4", "state push and waiting pull: one send"): ("A state push and a waiting pull",),
    ("4.5", "pause all; resume: OK, then held in order"): (
        "PUSH_PAUSE pauses all push streams", "PUSH_RESUME answers OK"),
    ("4.5", "pause/resume/disable changing nothing: OK"): ("Pausing while paused",),
    ("4.5", "held items age out (retention)"): ("While paused: - events and pushed snapshots",),
    ("4.5", "held bytes bounded, oldest first"): ("While paused: - events and pushed snapshots",),
    ("4.5", "held items bounded in count"): ("While paused: - events and pushed snapshots",),
    ("4.5", "pull while paused; held at or below dropped"): ("- a pull still gets its snapshot",),
    ("4.5", "disabling every push stream empties buffer"): ("- disabling every push stream",),
    ("4.6", "push data over the queue bound is dropped"): (
        "A session's outgoing queue is bounded",),
    ("4.6", "responses, Runtime, pulls always get through"): (
        "Push data is the only thing ever dropped",),
    ("4.6", "a pushed snapshot evicts the oldest event"): (
        "Events go before snapshots", "So a state-push subscriber keeps getting snapshots"),
    ("4.6", "no event queued: oldest snapshot dropped"): (
        "Events go before snapshots", "This covers dropped snapshots too"),
    ("4.6", "in the pause buffer, events go first"): ("Events go before snapshots",),
    ("4.6", "one notice per run, where its first item was"): ("Each run of consecutive drops",),
    ("4.6", "a run spans push items, joins its neighbours"): (
        "Each run of consecutive drops", "This covers dropped snapshots too"),
    ("4.6", "backpressure: reading waits on the replies"): (
        "A session's outgoing queue is bounded",),
    ("4.6", "reads nothing for the write timeout: 1008"): ("A client that reads nothing",),
    ("4.6", "bytes the socket accepts are progress"): ("A client that reads nothing",),
    ("4.6", "frame in flight, then 1008; close grace"): (
        "On the timeout the server finishes the frame in flight", "Only if that has not gone out"),
    ("4.6", "protocol violation: close frame, then TCP"): ("A WebSocket protocol violation",),
    ("4.7", "HELLO without config: OK, effective config"): (
        "HELLO (optional, at most once per session)", "A HELLO without a config is OK"),
    ("4.7", "a field that is 0 or absent: unchanged"): ("A field that is 0 or absent",),
    ("4.7", "interval rounded up, retention clamped"): (
        "The server rounds state_snapshot_interval_ms up",),
    ("4.7", "UPDATE_CONFIG without config is an ERR"): ("UPDATE_CONFIG without a config",),
    ("4.8", "second HELLO: ERR, the session goes on"): ("A second HELLO",),
    ("4.8", "unknown command or source: ERR"): ("A second HELLO",),
    ("4.8", "version above 1: ERR"): ("A second HELLO",),
    ("4.8", "unparseable bytes: ERR with the id if read"): ("A second HELLO",),
    ("4.8", "a text frame: ERR"): ("A text frame gets an ERR",),
    ("4.8", "a command over the size limit: 1009"): ("A command over the size limit",),
    ("4.8", "one response per command but a good REQUEST"): (
        "Every command other than a successful REQUEST",),
    ("4.9", "no command costs in the pause buffer's size"): (
        "Sessions share nothing but the snapshot bytes",),
    ("4.9", "a stuck session never delays another"): (
        "Sessions share nothing but the snapshot bytes",),
    ("4.9", "the node waits a bounded fan-out per pass"): (
        "Sessions share nothing but the snapshot bytes",),
    ("4.10", "replay: pacing, file order, byte-identical"): (
        "A server whose source is a recording", "Events are released in file order",
        "The first recorded snapshot is the latest"),
    ("4.10", "replay: the base interval from the recording"): (
        "A replay's base interval", "A client asking for 2,000 ms"),
    ("4.10", "replay: loops shift time so it keeps rising"): ("With looping, each later pass",),
    ("4.10", "replay: a pass lasts max(span, base interval)"): ("A looping pass lasts",),
    ("4.10", "replay: max retention raised to the interval"): ("The max retention is raised",),
    ("4.10", "replay: past 2^64 - 1 the loop ends, logged"): (
        "A timestamp that a shift would push past 2^64",),
}  # fmt: skip


def _spec_sentences(spec: Path) -> dict[str, list[str]]:
    """Each subsection of PROTOCOL.md §4 -> its sentences, markup dropped."""
    text = spec.read_text(encoding="utf-8")
    part = text[text.index("## 4. ") : text.index("\n## 5. ")]
    pieces = re.split(r"^### (4\.\d+)[^\n]*\n", part, flags=re.M)
    found: dict[str, list[str]] = {}
    for section, body in zip(pieces[1::2], pieces[2::2], strict=True):
        flat = " ".join(body.replace("**", "").replace("`", "").split())
        found[section] = [s for s in re.split(r"(?<=[.;])\s+(?=[A-Z\-])", flat) if s]
    return found


def _rules() -> list[tuple[str, str]]:
    """(section, the rule's first line) of every row."""
    doc = session_module.__doc__ or ""
    lines = doc[doc.index("=====  ") :].splitlines()
    function_at = lines[1].index("function")
    rules = []
    for line in lines[3:]:
        if line.startswith("====="):
            break
        if line[:7].strip():
            rules.append((line[:7].strip(), line[7:function_at].strip()))
    return rules


def test_every_row_claims_a_sentence_of_its_subsection(spec_path: Path):
    assert sorted(CLAIMS) == sorted(_rules()), "a row without claims, or a claim without row"
    sentences = _spec_sentences(spec_path)
    for (section, rule), claims in CLAIMS.items():
        assert claims, (section, rule)
        for claim in claims:
            starting = [s for s in sentences[section] if s.startswith(claim)]
            assert len(starting) == 1, (section, rule, claim, starting)


def test_every_sentence_of_section_4_is_claimed_by_a_row(spec_path: Path):
    """The map is complete: no sentence of §4 is without a row (function and test)."""
    sentences = _spec_sentences(spec_path)
    assert set(sentences) == {f"4.{n}" for n in range(1, 11)}
    claimed = {
        (section, sentence)
        for (section, _), claims in CLAIMS.items()
        for claim in claims
        for sentence in sentences[section]
        if sentence.startswith(claim)
    }
    unclaimed = [
        (section, sentence[:80])
        for section, listed in sentences.items()
        for sentence in listed
        if (section, sentence) not in claimed
    ]
    assert unclaimed == []
