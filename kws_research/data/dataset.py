"""From a ``dataset`` config to decoded, cached splits (:class:`PreparedData`).

``prepare(cfg)`` is what both the ``prepare`` stage and training call: it
generates or downloads the root when the config asks for it, scans it, plans
the task, and decodes every clip once into the cache; later calls read the
cache as long as the fingerprint and the files' modification times match.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from kws_research import ownership
from kws_research.config import shipped_group
from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE, STORED_DTYPE, saturate_int16
from kws_research.data import cache, long_audio, sources
from kws_research.data.audio import ClipError, decode_clip_checked, decode_long
from kws_research.data.download import ensure_downloaded
from kws_research.data.items import Item
from kws_research.data.layout import BACKGROUND_NOISE_DIR, SPLITS, Layout, scan
from kws_research.data.synthetic import GeneratorSettings, ensure_generated
from kws_research.data.task import TaskPlan, TaskSpec, check_words, plan_task
from kws_research.data.unknown import ExtraClips, UnknownSettings, extra_unknown_clips
from kws_research.errors import KwsError
from kws_research.locks import FileLock

log = logging.getLogger(__name__)

HELDOUT = "heldout"
COMMAND_NAME = re.compile(r"[\w.-]+(?: [\w.-]+)*")  # a folder name MLflow takes in a metric key on any OS


def dataset_config(cfg: Mapping) -> dict:
    """``cfg`` over the shipped ``conf/dataset/speech_commands.yaml``: a Python caller may
    pass only the keys it changes, and every default stays written once, in the YAML."""
    given = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return {**shipped_group("dataset", "speech_commands"), **given}


def task_spec(cfg: Mapping) -> TaskSpec:
    """The task part of a dataset config, with its types checked."""
    cfg = dataset_config(cfg)
    for key in ("commands", "heldout_unknown_words"):
        if any(isinstance(w, bool) for w in cfg.get(key) or ()):
            raise KwsError(
                f"dataset.{key}: contains a boolean; YAML reads unquoted yes/no/on/off as booleans, "
                'quote the words ("yes", "no", "on", "off")'
            )
    for word in cfg.get("commands") or ():
        if not COMMAND_NAME.fullmatch(str(word)):
            raise KwsError(
                f"dataset.commands: {str(word)!r} cannot name its detector threshold in MLflow "
                "(detector_threshold_<command>); use letters, digits, _ - . and inner spaces in command names "
                "(and in their folders)"
            )
    try:
        return TaskSpec(
            commands=tuple(str(w) for w in cfg["commands"]),
            unknown_percentage=float(cfg["unknown_percentage"]),
            silence_percentage=float(cfg["silence_percentage"]),
            validation_percentage=float(cfg["validation_percentage"]),
            testing_percentage=float(cfg["testing_percentage"]),
            seed=int(cfg["seed"]),
            heldout_unknown_words=tuple(str(w) for w in cfg.get("heldout_unknown_words") or ()),
            unknown=UnknownSettings.from_config(cfg),
        )
    except (TypeError, ValueError) as exc:
        raise KwsError(f"dataset: invalid value ({exc}); check dataset.commands and the percentages") from exc


def cache_root(cfg: Mapping) -> Path:
    return Path(str(cfg.get("cache_dir") or ".cache/kws_research")).expanduser()


def resolve_root(cfg: Mapping, refresh: bool = False) -> Path:
    """The data root, generated (synthetic) or downloaded (official archives) if asked;
    ``refresh`` generates the harness's own synthetic set again (a damaged one, say)."""
    generator = cfg.get("generator")
    if generator is not None:
        settings = GeneratorSettings.from_config(generator, "dataset.generator")
        root = Path(str(cfg.get("root") or cache_root(cfg) / "synthetic" / settings.digest()))
        try:
            if refresh:
                ownership.remove(root, "dataset.root", "set dataset.root=<a new folder> or leave it unset")
            return ensure_generated(root, settings)
        except OSError as exc:
            key = "dataset.root" if cfg.get("root") else "dataset.cache_dir"
            raise cache.storage_error(exc, root.parent, key) from exc
    root = cfg.get("root")
    if root in (None, "", "???"):
        raise KwsError(
            "dataset.root: not set; pass dataset.root=<folder in the Speech Commands layout> "
            "(make targets: DATA=<folder>)"
        )
    root = Path(str(root)).expanduser()
    if cfg.get("download"):
        if not cfg.get("url"):
            raise KwsError("dataset.url: download=true needs the archive URL (dataset=speech_commands_v2 sets it)")
        return ensure_downloaded(str(cfg["url"]), root, cfg.get("archive_sha256"), cfg.get("archive_size"))
    return root


def _decode_all(
    root: Path, paths: list[str], workers: int
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """Decoded clips, unusable clips (skipped) and truncated clips (used), by path."""
    decoded: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    truncated: dict[str, str] = {}

    def one(rel: str):
        try:
            return rel, *decode_clip_checked(root / rel, CLIP_SAMPLES), None
        except ClipError as exc:
            return rel, None, None, str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for rel, audio, note, error in pool.map(one, paths, chunksize=64):
            if error is None:
                decoded[rel] = audio
                if note:
                    truncated[rel] = note
            else:
                failed[rel] = error
    return decoded, failed, truncated


def _decode_noise(layout: Layout) -> tuple[list[np.ndarray], list[dict], dict[str, str]]:
    arrays, files, failed = [], [], {}
    start = 0
    for entry in layout.noise_files:
        try:
            audio = decode_long(layout.root / entry.path)
        except ClipError as exc:
            failed[entry.path] = str(exc)
            continue
        arrays.append(audio)
        files.append({"name": entry.path, "start": start, "length": int(audio.shape[0])})
        start += int(audio.shape[0])
    return arrays, files, failed


def _render(item: Item, decoded: dict, noise: np.ndarray, noise_files: list[dict]) -> np.ndarray:
    if item.kind == "clip":
        return decoded[item.paths[0]]
    if item.kind == "window":
        return decoded[(item.paths[0], item.offset)]
    if item.kind == "silence":
        start = noise_files[item.noise]["start"] + item.offset
        return saturate_int16(noise[start : start + CLIP_SAMPLES].astype(np.float32) * item.gain)
    return sources.get(item.kind).render(item, decoded)  # a source that derives its audio


def _source_name(item: Item, noise_files: list[dict]) -> str:
    if item.kind == "silence":
        return f"silence:{noise_files[item.noise]['name']}@{item.offset}x{item.gain}"
    if item.kind == "window":
        return f"window:{item.paths[0]}@{item.offset}"
    if item.kind == "clip":
        return "+".join(item.paths)
    return sources.get(item.kind).source_name(item)


def _summary(
    name: str,
    root: Path,
    fp: str,
    plan: TaskPlan,
    splits: dict,
    skipped: dict[str, str],
    truncated: dict[str, str],
    layout: Layout,
    noise_files: list[dict],
) -> dict:
    counts = {}
    for split, (labels, _) in splits.items():
        tally = Counter(int(v) for v in labels)
        counts[split] = {c: tally.get(i, 0) for i, c in enumerate(plan.classes)}
    warnings = list(plan.warnings)
    if layout.missing_in_lists:
        warnings.append(
            f"{len(layout.missing_in_lists)} file(s) named in the split lists are missing under {root} "
            f"(first: {layout.missing_in_lists[0]}); they are ignored - restore them or fix the lists"
        )
    return {
        "dataset": name,
        "root": str(root),
        "fingerprint": fp,
        "classes": list(plan.classes),
        "counts": counts,
        "totals": {split: int(sum(c.values())) for split, c in counts.items()},
        "unknown_sources": plan.unknown_by_source,
        "noise_files": [f["name"] for f in noise_files],
        "skipped": [{"file": f, "reason": r} for f, r in sorted(skipped.items())],
        "n_skipped": len(skipped),
        "truncated": [{"file": f, "reason": r} for f, r in sorted(truncated.items())],
        "n_truncated": len(truncated),
        "warnings": warnings,
    }


def _build(
    path: Path,
    name: str,
    root: Path,
    fp: str,
    signature: str,
    spec: TaskSpec,
    layout: Layout,
    workers: int,
    extra: ExtraClips,
) -> None:
    noise_arrays, noise_files, skipped = _decode_noise(layout)
    skipped.update(layout.unusable_names)
    skipped.update(extra.skipped)
    noise = np.concatenate(noise_arrays) if noise_arrays else np.zeros(0, dtype=STORED_DTYPE)
    plan = plan_task(spec, layout, [f["length"] for f in noise_files], extra.clips)
    split_items = dict(plan.splits)
    if plan.heldout:
        split_items[HELDOUT] = plan.heldout
    every = [it for items in split_items.values() for it in items]
    paths = sorted({p for it in every if it.kind not in ("silence", "window") for p in it.paths})
    windows = sorted({(it.paths[0], it.offset) for it in every if it.kind == "window"})
    decoded, failed, truncated = _decode_all(layout.root, paths, workers)
    decoded.update(long_audio.cut(windows))
    skipped.update(failed)
    if failed:
        log.warning("skipped %d unreadable clip(s); see the summary", len(failed))
    if truncated:
        log.warning(
            "%d clip(s) are shorter than their header says (truncated files); used zero-padded, listed in the summary",
            len(truncated),
        )
    rows = sum(len(items) for items in split_items.values())
    writer = cache.CacheWriter(path, needed=rows * CLIP_SAMPLES * np.dtype(STORED_DTYPE).itemsize + noise.nbytes)
    try:
        class_index = {c: i for i, c in enumerate(plan.classes)}
        written = {}
        test_fingerprint = None
        heldout_splits = []
        for split, items in split_items.items():
            usable = [it.kind == "window" or all(p in decoded for p in it.paths) for it in items]
            kept = [it for it, ok in zip(items, usable) if ok]
            if split == HELDOUT:
                heldout_splits = [s for s, ok in zip(plan.heldout_splits, usable) if ok]
            audio = writer.audio(split, len(kept), CLIP_SAMPLES)
            for row, item in enumerate(kept):
                audio[row] = _render(item, decoded, noise, noise_files)
            audio.flush()
            labels = np.array([class_index[it.label] for it in kept], dtype=np.int16)
            if split == "test":
                test_fingerprint = cache.test_split_fingerprint(plan.classes, audio, labels)
            del audio
            writer.array(f"{split}.labels", labels)
            sources = [_source_name(it, noise_files) for it in kept]
            writer.json(f"{split}.sources.json", sources)
            written[split] = (labels, sources)
        writer.array("noise", noise)
        summary = _summary(name, root, fp, plan, written, skipped, truncated, layout, noise_files)
        writer.json("summary.json", summary)
        writer.json(
            "meta.json",
            {
                "name": name,
                "classes": list(plan.classes),
                "splits": list(written),
                "fingerprint": fp,
                "test_fingerprint": test_fingerprint,
                cache.HELDOUT_SPLITS: heldout_splits,
                "stat_signature": signature,
                "noise_files": noise_files,
                "root": str(root),
            },
        )
        writer.commit()
    except OSError as exc:
        writer.abort()
        raise cache.storage_error(exc, path.parent) from exc
    except BaseException:
        writer.abort()
        raise


def prepare(cfg: Mapping, refresh: bool = False, workers: int | None = None) -> PreparedData:
    """Decoded splits for the dataset config ``cfg`` (from the cache when valid)."""
    started = time.perf_counter()
    cfg = dataset_config(cfg)
    name = str(cfg.get("name", "dataset"))
    root = resolve_root(cfg, refresh)
    layout = scan(root)
    if not layout.noise_files:
        log.warning("%s has no %s folder: no silence clips or noise augmentation possible", root, BACKGROUND_NOISE_DIR)
    spec = task_spec(cfg)
    check_words(spec, layout)
    extra = extra_unknown_clips(spec, cache_root(cfg))
    task = spec.__dict__ | {
        "commands": list(spec.commands),
        "heldout_unknown_words": list(spec.heldout_unknown_words),
        "unknown": spec.unknown.identity(),
    }
    settings = {
        "task": task,
        "sample_rate": SAMPLE_RATE,
        "clip_samples": CLIP_SAMPLES,
        "extra_unknown_files": [f[:2] for f in extra.files],
    }
    fp = cache.fingerprint(layout, settings)
    signature = cache.stat_signature(layout, [f"{p}:{m}" for p, _, m in extra.files])
    path = cache_root(cfg) / "prepared" / f"{name}-{fp[:16]}"
    from_cache = True
    lock = FileLock(path.with_name(path.name + ".lock"))
    try:
        lock.acquire()
    except OSError as exc:
        raise cache.storage_error(exc, path.parent) from exc
    with lock:
        if refresh or not cache.is_valid(path, signature):
            from_cache = False
            log.info("decoding %s into %s", root, path)
            _build(path, name, root, fp, signature, spec, layout, workers or min(8, (os.cpu_count() or 2) * 2), extra)
    data = cache.load(path)
    data.summary = dict(  # root: this data root, also when the cache was built from an identical copy elsewhere
        data.summary,
        root=str(root),
        cache=str(path),
        from_cache=from_cache,
        seconds=round(time.perf_counter() - started, 3),
    )
    return data


PreparedData = cache.PreparedData
__all__ = ["prepare", "PreparedData", "SPLITS", "HELDOUT", "task_spec", "resolve_root"]
