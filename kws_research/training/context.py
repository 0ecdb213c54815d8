"""Context augmentation (``stream_windows.context``): a share of the centred command clips
is heard with other speech just before or after the command, as the detector meets a
command said inside talk.

The end of another training clip's speech ends a short gap before the command starts,
the start of one begins a short gap after it ends, or both; the command's own samples are
left as they are, so the window still holds the whole command and keeps its label. The
other speech is any ``unknown`` clip of the training split (words, talk, spliced or
partial words), so its speakers are the split's own. Which clips get context, and what,
is seeded by (seed, epoch, row): the epochs hear different contexts, a rerun the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE
from kws_research.data.audio import speech_extents
from kws_research.labels import UNKNOWN, is_command
from kws_research.training.pipeline import ClipExamples

GAP_SECONDS = (0.0, 0.15)  # between the other speech and the command
CONTEXT_SEED = 7_003
INT16 = np.iinfo(np.int16)


@dataclass
class ContextClips:
    """The clips of :class:`ClipExamples`, a ``share`` of the commands with context."""

    clips: ClipExamples
    classes: list[str]
    share: float
    seed: int
    extents: np.ndarray = field(init=False)
    donors: np.ndarray = field(init=False)
    is_command: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        split = self.clips.split
        self.extents = speech_extents(split.audio)
        self.is_command = np.array([is_command(name) for name in self.classes])
        self.donors = np.flatnonzero(split.labels == self.classes.index(UNKNOWN))

    def __len__(self) -> int:
        return len(self.clips)

    def rows(self, index: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        out, labels = self.clips.rows(index, epoch)
        if self.donors.size == 0:
            return out, labels
        for row in np.flatnonzero(self.is_command[labels]):
            rng = np.random.default_rng((CONTEXT_SEED, self.seed, epoch, int(index[row])))
            if rng.random() < self.share:
                out[row] = self._with_context(out[row], self.extents[index[row]], rng)
        return out, labels

    def _with_context(self, clip: np.ndarray, extent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``clip`` with the end of one donor's speech before ``extent`` and/or the start of
        another's after it (side: 0 before, 1 after, 2 both)."""
        side = int(rng.integers(3))
        mixed = clip.astype(np.int32)
        start, end = int(extent[0]), int(extent[1])
        stop = start - int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE)
        if side in (0, 2) and stop > 0:
            speech = self._donor_speech(rng)[-stop:]
            mixed[stop - speech.size : stop] += speech
        begin = end + int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE)
        if side in (1, 2) and begin < CLIP_SAMPLES:
            speech = self._donor_speech(rng)[: CLIP_SAMPLES - begin]
            mixed[begin : begin + speech.size] += speech
        return np.clip(mixed, INT16.min, INT16.max).astype(np.int16)

    def _donor_speech(self, rng: np.random.Generator) -> np.ndarray:
        donor = int(self.donors[int(rng.integers(self.donors.size))])
        begin, end = self.extents[donor]
        return np.asarray(self.clips.split.audio[donor, begin:end], np.int32)
