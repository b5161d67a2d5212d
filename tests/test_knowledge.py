"""Knowledge bases and documents in the engine (`engine.knowledge`), on real Weaviate and
the real local embedder: names are matched forgivingly where a person types them and
exactly where a script asks; each document has a status from where it is (queued in an
import, failed with its reason, ready in the store, removed); a document's memories come
in the document's order; an import's choices are remembered on the server."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from memsys import MemorySystem, count_memories
from memsys.access import AccessDenied, AuthorizedEngine, Role, User
from memsys.engine import Engine, ImportChoice, MemoryFilter, find_name, name_key
from memsys.ingest.chunking import ChunkSettings
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs import JobStore

from test_pipeline import SMALL_BATCHES

CHUNKS = ChunkSettings(max_tokens=40, overlap_tokens=0)
ENCYCLOPEDIA = MemoryDefaults(project="encyclopedia", repo="main", agent="shared", tags=("atlas",))
PARAGRAPHS = [
    "Zirconium is a lustrous grey transition metal that resists corrosion in seawater.",
    "Hafnium is found with zirconium in nature and is hard to separate from it.",
    "Titanium is light and strong and is used for aircraft frames and surgical implants.",
    "Vanadium hardens steel and is added to the tools used by metal workers.",
]


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path, job_database: dict[str, str]) -> Iterator[Engine]:
    # On SQLite and PostgreSQL (tests/postgres_support.py).
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data", **job_database), system=memsys_system)
    yield engine
    engine.job_store.close()


def imported(engine: Engine, files: dict[str, str], defaults: MemoryDefaults = ENCYCLOPEDIA) -> str:
    folder = Path(engine.settings.data_dir) / "in"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    job_id = engine.imports.start(engine.imports.spool_paths(paths), defaults, chunking=CHUNKS, config=SMALL_BATCHES)
    engine.runner.wait(job_id, timeout=300)
    return job_id


def test_names_match_forgivingly_ignoring_case_and_spaces() -> None:
    names = ["encyclopedia", "Field notes"]
    assert find_name("Encyclopedia ", names) == "encyclopedia"
    assert find_name("  field   NOTES", names) == "Field notes"
    assert find_name("encyclopaedia", names) is None
    assert find_name("   ", names) is None
    assert name_key(" A  b ") == "a b"


def test_a_typed_name_finds_the_existing_knowledge_base_and_a_new_one_like_it_is_refused(engine: Engine) -> None:
    imported(engine, {"metals.md": "\n\n".join(PARAGRAPHS[:2])})
    assert engine.knowledge.find("Encyclopedia ") == "encyclopedia"
    with pytest.raises(ValueError, match="“encyclopedia” already exists.*Pick “encyclopedia” from the list"):
        engine.knowledge.check_new(" ENCYCLOPEDIA")
    assert engine.knowledge.check_new("  Atlas   of maps ") == "Atlas of maps"
    with pytest.raises(ValueError, match="Type a name"):
        engine.knowledge.check_new("  ")
    # A script asks exactly: the guide's functions and filters do not fold case.
    assert count_memories(project="Encyclopedia") == 0
    assert count_memories(project="encyclopedia") == engine.memories.count(MemoryFilter(project="encyclopedia")) > 0
    assert engine.knowledge.names() == ["encyclopedia"]


def test_a_knowledge_base_lists_its_documents_with_their_status_and_reason(engine: Engine) -> None:
    job_id = imported(engine, {"metals.md": "\n\n".join(PARAGRAPHS), "broken.pdf": "%PDF-1.4 this is not a pdf"})
    base = engine.knowledge.get("encyclopedia")
    assert base is not None
    assert (base.documents, base.parts, base.agents, base.last_job_id) == (1, ("main",), ("shared",), job_id)
    assert base.memories == engine.memories.count(MemoryFilter(project="encyclopedia")) >= 4
    documents = {d.source_file: d for d in engine.knowledge.documents("encyclopedia")}
    assert set(documents) == {"metals.md", "broken.pdf"}
    assert (documents["metals.md"].status, documents["metals.md"].memories) == ("ready", base.memories)
    assert documents["broken.pdf"].status == "failed" and documents["broken.pdf"].memories == 0
    assert documents["broken.pdf"].reason and documents["broken.pdf"].job_id == job_id

    # An import waiting to run shows its files as queued.
    folder = Path(engine.settings.data_dir) / "later"
    folder.mkdir()
    (folder / "later.md").write_text(PARAGRAPHS[0], encoding="utf-8")
    queued = engine.imports.create(engine.imports.spool_paths([folder / "later.md"]), ENCYCLOPEDIA)
    statuses = {d.source_file: d.status for d in engine.knowledge.documents("encyclopedia")}
    assert statuses["later.md"] == "queued"
    engine.jobs.cancel(queued)

    removed = engine.knowledge.remove_document(documents["metals.md"].document_id)
    assert removed == base.memories
    after = {d.source_file: d for d in engine.knowledge.documents("encyclopedia")}
    assert (after["metals.md"].status, after["metals.md"].memories) == ("removed", 0)
    assert engine.memories.count(MemoryFilter(project="encyclopedia")) == 0
    with pytest.raises(ValueError, match="nothing to remove"):
        engine.knowledge.remove_document(documents["metals.md"].document_id)


def test_a_document_opens_to_its_memories_in_order(engine: Engine) -> None:
    imported(engine, {"metals.md": "\n\n".join(PARAGRAPHS)})
    document = engine.knowledge.documents("encyclopedia")[0]
    memories = engine.knowledge.memories_of(document.document_id)
    assert len(memories) == document.memories >= 4
    text = " ".join(m.content for m in memories)
    positions = [text.index(p.split(" is ")[0]) for p in PARAGRAPHS]
    assert positions == sorted(positions)


def test_filters_offer_the_values_the_memories_hold(engine: Engine) -> None:
    imported(engine, {"a.md": PARAGRAPHS[0]})
    imported(engine, {"b.md": PARAGRAPHS[1]}, MemoryDefaults("Field notes", "drafts", "scout", ("metals", "atlas")))
    assert engine.knowledge.values("project") == ["encyclopedia", "Field notes"]
    assert engine.knowledge.values("repo") == ["drafts", "main"]
    assert engine.knowledge.values("tags") == ["atlas", "metals"]
    assert engine.knowledge.values("agent", MemoryFilter(project="Field notes")) == ["scout"]
    with pytest.raises(ValueError, match="not a field"):
        engine.knowledge.values("content")


def test_an_imports_choices_are_remembered_on_the_server(engine: Engine) -> None:
    assert engine.knowledge.last_choice("ann@example.com") is None
    engine.knowledge.remember("ann@example.com", ImportChoice("encyclopedia", "", "scout", ("atlas",), ""))
    # Another process (a new session, a restarted dashboard) reads the same database.
    again = JobStore(engine.settings.job_database)
    try:
        assert again.remembered("ann@example.com", "import")["knowledge_base"] == "encyclopedia"
    finally:
        again.close()
    choice = engine.knowledge.last_choice("ann@example.com")
    assert choice == ImportChoice("encyclopedia", "", "scout", ("atlas",), "")
    assert engine.knowledge.last_choice("bob@example.com") is None


def test_removing_a_document_is_an_operators_and_choices_are_remembered_by_whoever_imports(engine: Engine) -> None:
    viewer = AuthorizedEngine(engine, User("vic", "vic@example.com", Role.VIEWER))
    operator = AuthorizedEngine(engine, User("olga", "olga@example.com", Role.OPERATOR))
    with pytest.raises(AccessDenied, match="removing a document needs the operator role"):
        viewer.knowledge.remove_document("any-document")
    with pytest.raises(AccessDenied):
        viewer.knowledge.remember("vic@example.com", ImportChoice("encyclopedia"))
    assert viewer.knowledge.names() == []  # reading is everyone's
    with pytest.raises(ValueError, match="nothing to remove"):  # allowed, then told there is nothing
        operator.knowledge.remove_document("any-document")
