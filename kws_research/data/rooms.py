"""Rooms: simulated room impulse responses, generated once and cached.

Talk near a phone reaches it through a room. Each response is a shoebox room
(pyroomacoustics' image-source method) whose walls absorb enough for an RT60 drawn
from ``rt60`` (seconds), with the talker ``distance`` metres from the microphone.
Sabine's formula, which turns an RT60 into wall absorption, misses what the image
sources then produce by up to 1.7x, so each room's requested RT60 is corrected until
the response's measured RT60 (T30 by Schroeder integration) is within 10% of the
drawn one; that measured value is kept with the response. Seeded; cached by settings
in ``<cache_dir>/rooms/<digest>/rooms.npz``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from kws_research.contract import SAMPLE_RATE
from kws_research.data.synthetic import write_complete
from kws_research.errors import ConfigError, KwsError
from kws_research.locks import FileLock

ROOMS_FILE = "rooms.npz"
RT60_TOLERANCE = 0.10  # relative, measured against drawn
SPEED_OF_SOUND = 343.0


@dataclass(frozen=True)
class RoomSettings:
    """Keys of a ``rooms`` block (``augment.reverb.rooms``, ``stream.reverb.rooms``)."""

    count: int = 24
    rt60: tuple[float, float] = (0.1, 0.9)
    distance: tuple[float, float] = (0.5, 4.0)
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Mapping | None, key: str) -> RoomSettings:
        cfg = dict(cfg or {})
        unknown = set(cfg) - set(asdict(cls()))
        if unknown:
            raise ConfigError(key, f"unknown key(s) {sorted(unknown)}; rooms take count, rt60, distance, seed")
        settings = cls(
            count=int(cfg.get("count", cls.count)),
            rt60=tuple(float(v) for v in cfg.get("rt60", cls.rt60)),
            distance=tuple(float(v) for v in cfg.get("distance", cls.distance)),
            seed=int(cfg.get("seed", cls.seed)),
        )
        if settings.count < 1:
            raise ConfigError(f"{key}.count", f"{settings.count} must be at least 1")
        for name, value, (low, high), unit in (
            ("rt60", settings.rt60, (0.05, 2.0), "seconds"),
            ("distance", settings.distance, (0.1, 6.0), "metres"),
        ):
            if len(value) != 2 or not low <= value[0] <= value[1] <= high:
                raise ConfigError(f"{key}.{name}", f"{list(value)} must be [low, high] {unit} within [{low}, {high}]")
        return settings

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Rooms:
    """The responses (float32, direct path first) and what each room is."""

    responses: list[np.ndarray]
    rt60: np.ndarray  # drawn
    measured_rt60: np.ndarray
    distance: np.ndarray

    def pick(self, rng: np.random.Generator) -> np.ndarray:
        return self.responses[int(rng.integers(len(self.responses)))]


def measured_rt60(response: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """T30 of an impulse response: the time of its Schroeder decay from -5 to -35 dB, times 2."""
    energy = np.cumsum(np.asarray(response, np.float64)[::-1] ** 2)[::-1]
    decay = 10 * np.log10(np.maximum(energy / energy[0], 1e-300))
    start, end = np.argmax(decay <= -5.0), np.argmax(decay <= -35.0)
    if end <= start:
        return float("nan")
    return 2.0 * (end - start) / rate


def _room(rt60: float, rng: np.random.Generator, distance: tuple[float, float]):
    """(room dimensions, source, microphone, metres apart) of a room that can have ``rt60``."""
    import pyroomacoustics as pra  # only rooms need it: a missing package is one line, below

    for attempt in range(40):
        dims = np.array([rng.uniform(3.0, 8.0), rng.uniform(2.5, 6.0), rng.uniform(2.4, 3.5)]) * 0.9**attempt
        dims = np.maximum(dims, [1.8, 1.8, 2.2])
        try:
            pra.inverse_sabine(rt60, dims)
        except ValueError:  # too large a room for so short an RT60: try a smaller one
            continue
        margin = np.array([0.3, 0.3, 0.5])
        mic = rng.uniform(margin, dims - margin)
        for _ in range(100):
            metres = rng.uniform(*distance)
            direction = rng.normal(size=3)
            direction[2] *= 0.2  # talkers sit or stand near the phone's height
            source = mic + metres * direction / np.linalg.norm(direction)
            if np.all(source > margin) and np.all(source < dims - margin):
                return dims, source, mic, float(metres)
    raise KwsError(f"rooms: no shoebox room fits RT60 {rt60:.2f} s at {list(distance)} m; widen rooms.distance")


def _response(dims, source, mic, rt60: float) -> np.ndarray | None:
    """The room's impulse response for a requested RT60; None when no absorption gives it."""
    import pyroomacoustics as pra

    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:
        return None
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    response = np.asarray(room.rir[0][0], np.float64)
    first = max(0, int(np.argmax(np.abs(response) > 0.1 * np.abs(response).max())) - 16)
    return (response[first:] / np.abs(response).max()).astype(np.float32)


def simulate(settings: RoomSettings) -> Rooms:
    """Every room of ``settings``, its RT60 corrected to within RT60_TOLERANCE of the drawn one."""
    try:
        import pyroomacoustics  # noqa: F401  (checked once, before any room)
    except ImportError:
        raise KwsError("rooms need pyroomacoustics: pip install 'pyroomacoustics>=0.10,<0.11'") from None
    rng = np.random.default_rng([settings.seed, 29])
    responses, drawn, measured, distances = [], [], [], []
    for _ in range(settings.count):
        target = float(rng.uniform(*settings.rt60))
        dims, source, mic, metres = _room(target, rng, settings.distance)
        asked, response = target, _response(dims, source, mic, target)
        got = measured_rt60(response)
        for _ in range(6):
            if abs(got - target) <= RT60_TOLERANCE * target:
                break
            corrected = _response(dims, source, mic, asked * target / got)
            if corrected is None:  # the room cannot absorb more: keep what it gives
                break
            asked, response = asked * target / got, corrected
            got = measured_rt60(response)
        responses.append(response)
        drawn.append(target)
        measured.append(got)
        distances.append(metres)
    return Rooms(responses, np.array(drawn), np.array(measured), np.array(distances))


def _save(rooms: Rooms, path: Path) -> None:
    lengths = np.array([len(r) for r in rooms.responses])
    np.savez(
        path,
        samples=np.concatenate(rooms.responses),
        lengths=lengths,
        rt60=rooms.rt60,
        measured_rt60=rooms.measured_rt60,
        distance=rooms.distance,
    )


def _load(path: Path) -> Rooms:
    with np.load(path) as stored:
        bounds = np.concatenate([[0], np.cumsum(stored["lengths"])])
        samples = stored["samples"]
        responses = [samples[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return Rooms(responses, stored["rt60"], stored["measured_rt60"], stored["distance"])


def rooms_for(settings: RoomSettings, cache_dir: Path) -> Rooms:
    """The rooms of ``settings``: simulated once (under a lock), then read from the cache."""
    target = Path(cache_dir) / "rooms" / settings.digest()
    path = target / ROOMS_FILE
    if not path.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(target.with_name(target.name + ".lock")):
            if not path.is_file():
                write_complete(target, lambda folder: _write(folder, settings))
    return _load(path)


def _write(folder: Path, settings: RoomSettings) -> dict:
    rooms = simulate(settings)
    _save(rooms, folder / ROOMS_FILE)
    return {"settings": asdict(settings), "measured_rt60": rooms.measured_rt60.round(3).tolist()}


def reverberate(audio: np.ndarray, response: np.ndarray, tail: bool = False) -> np.ndarray:
    """``audio`` (float, one clip or word) heard through ``response``, at the RMS it had:
    the same length, or with ``tail`` followed by the room's decay."""
    audio = np.asarray(audio, np.float32)
    wet = fftconvolve(audio, response).astype(np.float32)
    dry_rms, wet_rms = float(np.sqrt(np.mean(audio**2))), float(np.sqrt(np.mean(wet[: audio.shape[-1]] ** 2)))
    wet = wet if tail else wet[: audio.shape[-1]]
    return wet * (dry_rms / wet_rms) if wet_rms > 0 else wet
