"""Model specs: one clear error per bad input (naming the key), cheap config reads, safetensors conversion."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from gguf import GGUFWriter
from pydantic import ValidationError

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm import loading
from axbench_kedro.lm.chat import GEMMA_CHAT_TEMPLATE
from axbench_kedro.lm.loading import (
    check_model_spec,
    convert_to_safetensors,
    default_cache_dir,
    load_target_model,
    read_model_config,
    resolve_dtype,
    validate_layer,
    validate_spec,
)
from axbench_kedro.lm.types import ModelSpec
from fixtures.tiny_models import make_tiny_target_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny Gemma-2 saved as a plain safetensors directory via the conversion function."""
    tm = make_tiny_target_model("gemma2", n_layers=3, seed=5)
    out = tmp_path_factory.mktemp("models") / "tiny-gemma2"
    convert_to_safetensors(tm.model, tm.tokenizer, out, source="test")
    return tm, out


def _written(writer: GGUFWriter, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _gguf(path: Path, arch: str = "gemma3", blocks: int = 6, width: int = 64) -> Path:
    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(blocks)
    writer.add_embedding_length(width)
    return _written(writer, path)


def test_validate_layer():
    validate_layer(4, 0)
    validate_layer(4, 3)
    for bad in (4, -1, 10):
        with pytest.raises(AxbenchConfigError, match=rf"^layer: {bad} is outside \[0, 4\)"):
            validate_layer(4, bad)
    with pytest.raises(AxbenchConfigError, match="^layer: must be an integer"):
        validate_layer(4, "2")  # type: ignore[arg-type]
    with pytest.raises(AxbenchConfigError, match="^layer"):
        validate_layer(4, True)  # type: ignore[arg-type]


def test_missing_local_directory(tmp_path):
    spec = ModelSpec(source="local", name_or_path=str(tmp_path / "nowhere"))
    with pytest.raises(
        AxbenchConfigError, match=r"^model\.name_or_path: local model directory .* does not exist"
    ):
        load_target_model(spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AxbenchConfigError, match=r"^model\.name_or_path: .* has no config\.json"):
        check_model_spec(ModelSpec(source="local", name_or_path=str(tmp_path / "empty")), 0)


def test_missing_gguf(tmp_path):
    with pytest.raises(AxbenchConfigError, match=r"^model\.gguf_file: 'model\.gguf' not found in"):
        validate_spec(ModelSpec(source="gguf", name_or_path=str(tmp_path), gguf_file="model.gguf"))
    with pytest.raises(AxbenchConfigError, match=r"^model\.gguf_file: .* not found"):
        load_target_model(ModelSpec(source="local", name_or_path=str(tmp_path), gguf_file="x.gguf"))
    with pytest.raises(AxbenchConfigError, match=r"^model\.name_or_path: GGUF file .* does not exist"):
        check_model_spec(ModelSpec(source="gguf", name_or_path=str(tmp_path / "m.gguf")), 0)
    with pytest.raises(AxbenchConfigError, match=r"^model\.name_or_path: directory .* does not exist"):
        validate_spec(ModelSpec(source="gguf", name_or_path=str(tmp_path / "no"), gguf_file="m.gguf"))


def test_hf_id_not_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(loading, "_hf_cached_file", lambda repo, name: None)
    with pytest.raises(
        AxbenchConfigError, match=r"^model\.name_or_path: 'config\.json' of 'google/gemma-2-2b-it'"
    ):
        check_model_spec(ModelSpec(source="hf", name_or_path="google/gemma-2-2b-it"), 10)
    with pytest.raises(AxbenchConfigError, match=r"^model\.gguf_file: 'm\.gguf' of 'org/repo'"):
        validate_spec(ModelSpec(source="hf", name_or_path="org/repo", gguf_file="m.gguf"))


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("source", "s3", "model.source"),
        ("dtype", "float64", "model.dtype"),
        ("device", "tpu", "model.device"),
        ("name_or_path", " ", "model.name_or_path"),
        ("gguf_file", "", "model.gguf_file"),
    ],
)
def test_bad_fields_name_their_key(field, value, key):
    with pytest.raises(ValidationError) as info:
        ModelSpec.from_config({"source": "local", "name_or_path": ".", field: value})
    assert [".".join(map(str, e["loc"])) for e in info.value.errors()] == [key]


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"sorce": "hf"}, "model.sorce"),
        ({"device": 0}, "model.device"),
        ({"cache_dir": 3}, "model.cache_dir"),
        ("embedded", "model"),
    ],
)
def test_unknown_or_mistyped_keys_are_one_validation_error(block, key):
    with pytest.raises(ValidationError) as info:
        ModelSpec.from_config(block)
    assert [".".join(map(str, e["loc"])) for e in info.value.errors()] == [key]


def test_spec_is_frozen_and_hashable():
    spec = ModelSpec.from_config({"source": "local", "name_or_path": ".", "device": "cuda:1"})
    assert spec == ModelSpec(source="local", name_or_path=".", device="cuda:1")
    assert {spec: 1}[ModelSpec(source="local", name_or_path=".", device="cuda:1")] == 1
    assert ModelSpec.from_config(spec) is spec
    with pytest.raises(ValidationError):
        spec.device = "cpu"


def test_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AxbenchConfigError, match=r"^model\.device: 'cuda'"):
        validate_spec(ModelSpec(source="local", name_or_path=".", device="cuda"))
    assert loading.resolve_device("auto") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_read_model_config_from_gguf_metadata(tmp_path):
    path = _gguf(tmp_path / "tiny.gguf", "gemma2", blocks=6, width=64)
    spec = ModelSpec(source="gguf", name_or_path=str(path), cache_dir=str(tmp_path / "cache"))
    dims = read_model_config(spec)
    assert (dims.n_layers, dims.d_model, dims.model_type) == (6, 64, "gemma2")
    check_model_spec(spec, 5)
    with pytest.raises(AxbenchConfigError, match=r"^layer: 6 is outside \[0, 6\)"):
        check_model_spec(spec, 6)
    same = ModelSpec(
        source="local", name_or_path=str(tmp_path), gguf_file="tiny.gguf", cache_dir=str(tmp_path)
    )
    assert read_model_config(same).n_layers == 6


def test_conversion_round_trip_and_loading(tiny_dir):
    tm, out = tiny_dir
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "axbench_conversion.json").read_text())["source"] == "test"
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]
    spec = ModelSpec(source="local", name_or_path=str(out))
    dims = read_model_config(spec)
    assert (dims.n_layers, dims.d_model) == (3, 64)
    loaded = load_target_model(spec)
    assert load_target_model(spec) is loaded  # memoized
    assert loaded.n_layers == 3 and loaded.name == str(out) and loaded.dtype == torch.float32
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.tokenizer.chat_template == GEMMA_CHAT_TEMPLATE
    assert loaded.model.generation_config.eos_token_id == [1, 5]
    ids = torch.tensor([[2, 4, 10, 11, 12, 5]])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.model(input_ids=ids).logits, tm.model(input_ids=ids).logits, atol=1e-5, rtol=0
        )
    text = "<bos><start_of_turn>user\nhello world<end_of_turn>"
    assert (
        loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        == tm.tokenizer(text, add_special_tokens=False)["input_ids"]
    )


def test_the_lm_head_gets_the_kept_positions_as_one_contiguous_block(tiny_dir):
    _, out = tiny_dir
    loaded = load_target_model(ModelSpec(source="local", name_or_path=str(out)))
    seen = []
    handle = loaded.model.get_output_embeddings().register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].is_contiguous())
    )
    ids = torch.tensor([[2, 4, 10, 11], [2, 12, 13, 14]])
    try:
        with torch.no_grad():
            last = loaded.model(input_ids=ids, logits_to_keep=1).logits  # what generate asks at prefill
            every = loaded.model(input_ids=ids).logits
    finally:
        handle.remove()
    assert seen == [True, True]  # the [:, -1:, :] view reached the head copied into one block
    torch.testing.assert_close(last[:, 0], every[:, -1], atol=1e-5, rtol=0)


def test_conversion_keeps_existing_and_cleans_stale_partials(tiny_dir, tmp_path):
    tm, _ = tiny_dir
    out = tmp_path / "m"
    stale = tmp_path / ".m.partial-999999999-1"  # no such process
    stale.mkdir()
    (stale / "junk").write_text("half written")
    convert_to_safetensors(tm.model, tm.tokenizer, out)
    assert not stale.exists()
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert convert_to_safetensors(tm.model, tm.tokenizer, out) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_interrupted_conversion_leaves_no_cache(tiny_dir, tmp_path, monkeypatch):
    tm, _ = tiny_dir
    out = tmp_path / "m"

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(tm.tokenizer), "save_pretrained", boom)
    with pytest.raises(KeyboardInterrupt):
        convert_to_safetensors(tm.model, tm.tokenizer, out)
    assert list(tmp_path.iterdir()) == []


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "axbench_kedro" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "axbench_kedro" / "models"


_EMBEDDED_CACHE = loading._conversion_dir(ModelSpec(), None)


@pytest.mark.skipif(
    not loading._is_complete(_EMBEDDED_CACHE), reason="embedded model not converted on this machine"
)
def test_embedded_model_config_and_chat_constants():
    from transformers import AutoTokenizer

    from axbench_kedro.lm.chat import (
        chat_prefix_length,
        chat_suffix_length,
        ensure_chat_template,
        format_binary,
    )

    dims = read_model_config(ModelSpec())
    assert (dims.n_layers, dims.d_model) == (18, 640)
    check_model_spec(ModelSpec(), 9)
    with pytest.raises(AxbenchConfigError, match="^layer: 18"):
        check_model_spec(ModelSpec(), 18)
    tok = ensure_chat_template(AutoTokenizer.from_pretrained(_EMBEDDED_CACHE))
    assert (chat_prefix_length(tok), chat_suffix_length(tok)) == (4, 2)
    assert format_binary(tok, "Hi", "Yo").endswith("Yo<end_of_turn>\n<start_of_turn>")


def test_gguf_header_is_parsed_once_per_file_during_conversion(tmp_path):
    import gguf

    first = _gguf(tmp_path / "a.gguf", blocks=2)
    second = _gguf(tmp_path / "b.gguf", blocks=3)
    original = gguf.GGUFReader
    with loading._one_gguf_reader():
        reader = gguf.GGUFReader(str(first))
        assert gguf.GGUFReader(first) is reader  # same file by another spelling: the same parse
        other = gguf.GGUFReader(second)
        assert other is not reader and other.fields["gemma3.block_count"].parts[-1][0] == 3
    assert gguf.GGUFReader is original
    assert gguf.GGUFReader(str(first)) is not reader  # outside the block, readers are fresh again


def test_gguf_metadata_reads_the_header_only_as_far_as_needed(tmp_path):
    from gguf import GGUFReader

    path = tmp_path / "vocab-first.gguf"
    writer = GGUFWriter(str(path), "gemma3")
    writer.add_token_list(
        ["<pad>", "<bos>", "héllo", ""]
    )  # a string array before the numbers, as in Gemma's files
    writer.add_array("test.ids", [3, 1, 4])
    writer.add_array("test.nested", [[1, 2], [3]])
    writer.add_float32("test.scale", 0.5)
    writer.add_bool("test.flag", True)
    writer.add_block_count(5)
    writer.add_embedding_length(48)
    writer.add_string("test.last", "end")
    _written(writer, path)

    every = loading.gguf_metadata(path, lambda found: {"test.last"})
    reader = GGUFReader(str(path))
    scalars = {
        k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.") and f.types[0] != 9
    }
    assert every == scalars  # arrays skipped, every scalar and string as gguf's own reader gives them
    assert every["gemma3.block_count"] == 5 and every["test.scale"] == 0.5 and every["test.flag"] is True
    assert loading.gguf_metadata(path, lambda found: {"general.architecture"}) == {
        "general.architecture": "gemma3"
    }
    assert loading._dims_from_gguf(path) == loading.ModelDims(5, 48, "gemma3")
    assert read_model_config(ModelSpec(source="gguf", name_or_path=str(path))).n_layers == 5


def test_gguf_metadata_errors_name_the_file(tmp_path):
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(AxbenchConfigError, match=r"weights\.gguf: not a GGUF file"):
        loading._dims_from_gguf(not_gguf)
    bare = tmp_path / "bare.gguf"
    writer = GGUFWriter(str(bare), "gemma3")
    writer.add_embedding_length(48)
    _written(writer, bare)
    with pytest.raises(AxbenchConfigError, match=r"bare\.gguf: GGUF metadata lacks gemma3\.block_count$"):
        loading._dims_from_gguf(bare)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(_gguf(tmp_path / "whole.gguf").read_bytes()[:40])  # inside the first key's name
    with pytest.raises(AxbenchConfigError, match=r"cut\.gguf: GGUF header ends early"):
        loading._dims_from_gguf(cut)
