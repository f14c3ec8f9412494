"""Speaker embeddings with Resemblyzer's pretrained GE2E encoder (PyTorch, on the CPU)."""

from functools import cache
from typing import Any

import numpy as np

from producer.algorithms.arrays import pack
from producer.errors import InvalidAudio
from tasks.audio import SAMPLE_RATE

# Below this much speech (after Resemblyzer trims silences) an embedding is noise.
MIN_SPEECH_SECONDS = 0.5


@cache
def encoder() -> Any:
    """This process's voice encoder, loaded once."""
    import torch
    from resemblyzer import VoiceEncoder

    # Celery scales by processes, one per core: torch's own threads would fight them.
    torch.set_num_threads(1)
    return VoiceEncoder("cpu", verbose=False)


def warm() -> None:
    from resemblyzer import preprocess_wav

    # The first forward pass (and librosa's first mel filterbank) is much slower than the
    # next ones: pay it at start. A tone is not speech to the trimming VAD, so run both parts.
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    tone = (0.1 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    preprocess_wav(tone)
    encoder().embed_utterance(tone)


def embed(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """The L2-normalised 256-d embedding of 16 kHz mono samples, and the seconds of speech."""
    from resemblyzer import preprocess_wav

    # Normalises loudness and drops long silences (webrtcvad), as the encoder was trained.
    speech = preprocess_wav(samples)
    seconds = len(speech) / SAMPLE_RATE
    if seconds < MIN_SPEECH_SECONDS:
        raise InvalidAudio(
            f"found {seconds:.2f} s of speech; a speaker embedding needs at least"
            f" {MIN_SPEECH_SECONDS} s"
        )
    vector = encoder().embed_utterance(speech)
    return vector.astype(np.float32), seconds


def embed_many(clips: list[np.ndarray]) -> list[tuple[np.ndarray, float] | Exception]:
    """embed() of each clip, with the encoder run once over every clip's partial windows
    (what Resemblyzer's embed_utterance does for one clip, for all at once); a clip with
    too little speech gets its InvalidAudio, the others their embeddings."""
    import torch
    from resemblyzer import audio, preprocess_wav

    model = encoder()
    out: list[tuple[np.ndarray, float] | Exception] = []
    windows: list[np.ndarray] = []  # per clip: its partial mel windows
    for samples in clips:
        speech = preprocess_wav(samples)
        seconds = len(speech) / SAMPLE_RATE
        if seconds < MIN_SPEECH_SECONDS:
            out.append(
                InvalidAudio(
                    f"found {seconds:.2f} s of speech; a speaker embedding needs at least"
                    f" {MIN_SPEECH_SECONDS} s"
                )
            )
            continue
        wav_slices, mel_slices = model.compute_partial_slices(len(speech), 1.3, 0.75)
        if wav_slices[-1].stop >= len(speech):
            speech = np.pad(speech, (0, wav_slices[-1].stop - len(speech)), "constant")
        mel = audio.wav_to_mel_spectrogram(speech)
        windows.append(np.array([mel[s] for s in mel_slices]))
        out.append((np.empty(0, np.float32), seconds))  # filled in below
    if windows:
        with torch.no_grad():
            partials = model(torch.from_numpy(np.concatenate(windows))).cpu().numpy()
        bounds = np.cumsum([len(w) for w in windows])[:-1]
        vectors = iter(np.split(partials, bounds))
        for i, item in enumerate(out):
            if isinstance(item, tuple):
                mean = np.mean(next(vectors), axis=0)
                out[i] = ((mean / np.linalg.norm(mean, 2)).astype(np.float32), item[1])
    return out


def embeddings(requests: list[tuple[list[np.ndarray], dict[str, Any]]]) -> list[Any]:
    """speaker.embed for a batch of requests (tasks/batch.py): one answer or error each."""
    made = embed_many([clips[0] for clips, _ in requests])
    return [
        item if isinstance(item, Exception) else _embedding_answer(item[0], item[1], clips[0])
        for item, (clips, _) in zip(made, requests, strict=True)
    ]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def verify_pair(a: np.ndarray, b: np.ndarray, threshold: float) -> dict[str, Any]:
    emb_a, speech_a = embed(a)
    emb_b, speech_b = embed(b)
    score = cosine(emb_a, emb_b)
    return {
        "score": round(score, 4),
        "same": score >= threshold,
        "threshold": threshold,
        "speech": [round(speech_a, 3), round(speech_b, 3)],
    }


MODEL = "resemblyzer GE2E (256-d)"


def embedding(samples: np.ndarray) -> dict[str, Any]:
    """speaker.embed: the voice's embedding (packed float32), seconds of speech, duration."""
    vector, speech = embed(samples)
    return _embedding_answer(vector, speech, samples)


def _embedding_answer(vector: np.ndarray, speech: float, samples: np.ndarray) -> dict[str, Any]:
    return {
        "embedding": pack(vector),
        "speech": round(speech, 3),
        "duration": round(len(samples) / SAMPLE_RATE, 3),
        "model": MODEL,
    }


def verify(a: np.ndarray, b: np.ndarray, *, threshold: float) -> dict[str, Any]:
    """speaker.verify: the cosine score of two clips' voices, and whether it reaches
    `threshold`."""
    return {**verify_pair(a, b, threshold), "model": MODEL}
