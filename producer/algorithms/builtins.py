"""The built-in algorithms, declared the way a plugin declares its own (producer.algorithms).

Time limits: each hard limit stays far below RabbitMQ's consumer_timeout (30 min) for
late-acked requests; the figures are for the longest audio (600 s) on a busy core.
"""

from dataclasses import replace

from producer.algorithms.declare import Algorithm, Operation, Option, Resources

SECONDS = {"low": 0.0, "high": 60.0}

ASR = Algorithm(
    name="asr",
    summary="speech recognition (pocketsphinx, US English): text and timed words",
    warm="tasks.asr:warm",
    # pocketsphinx runs at 0.2-0.5 x real time: 600 s needs up to ~300 s, in one C call
    # that only the hard limit can stop.
    operations=(
        Operation(
            function="tasks.asr:recognize",
            help="transcribe speech: text, words with start/end/confidence, duration",
            soft_time_limit=300,
            time_limit=330,
        ),
    ),
)

VAD = Algorithm(
    name="vad",
    summary="voice activity detection (Silero VAD): speech segments in seconds",
    warm="tasks.vad:warm",
    # ~1/60 of real time: 600 s of audio takes ~10 s even on a busy core.
    operations=(
        Operation(
            function="tasks.vad:detect",
            batch="tasks.vad:detect_each",
            help="find the speech: segments [{start, end}], duration, seconds of speech",
            options={
                # the low end is the hysteresis below the threshold (tasks/vad.py)
                "threshold": Option("number", 0.5, "speech probability", low=0.15, high=1.0),
                "min_speech": Option("number", 0.25, "shortest segment kept, s", **SECONDS),
                "min_silence": Option("number", 0.3, "shortest pause that ends one, s", **SECONDS),
                "pad": Option("number", 0.05, "silence kept around each segment, s", **SECONDS),
            },
            soft_time_limit=60,
            time_limit=90,
        ),
    ),
)

SPEAKER = Algorithm(
    name="speaker",
    summary="speaker embeddings and verification (Resemblyzer GE2E, 256-d, PyTorch)",
    warm="tasks.speaker:warm",
    resources=Resources(threads=1, memory_mb=600),
    # ~0.05 s per second of speech once warm.
    operations=(
        Operation(
            name="embed",
            function="tasks.speaker:embedding",
            # one encoder pass over the partial windows of every clip of the batch
            batch="tasks.speaker:embeddings",
            help="a 256-d L2-normalised voice embedding",
            soft_time_limit=90,
            time_limit=120,
        ),
        Operation(
            name="verify",
            function="tasks.speaker:verify",
            help="do two clips hold the same voice? cosine score and verdict",
            clips=2,
            options={
                # GE2E embeddings of one flite voice scored 0.80-0.94 across sentences,
                # different voices 0.49-0.73: the midpoint. Calibrate it on your own
                # speakers: the score is what the model knows.
                "threshold": Option(
                    "number", 0.77, "cosine score for 'same speaker'", low=-1.0, high=1.0
                ),
            },
            soft_time_limit=120,
            time_limit=150,
        ),
    ),
)

FEATURES = Algorithm(
    name="features",
    summary="frame-wise MFCC, log-mel, f0 (pyin) and RMS (librosa)",
    warm="tasks.features:warm",
    # pyin is the slow part (~0.25 x real time on one core: 600 s ~150 s, more when busy).
    operations=(
        Operation(
            function="tasks.features:features",
            help="features on one frame grid, with each frame's time",
            options={
                "include": Option(
                    "choices",
                    ["mfcc", "rms"],
                    "features to compute",
                    choices=("mfcc", "logmel", "f0", "rms"),
                ),
                "n_mfcc": Option("integer", 13, "MFCC coefficients", low=1, high=128),
                "n_mels": Option("integer", 64, "mel bands", low=8, high=256),
                "hop": Option("integer", 160, "frame step in samples at 16 kHz", low=32, high=4096),
            },
            soft_time_limit=420,
            time_limit=480,
        ),
    ),
)

DENOISE = Algorithm(
    name="denoise",
    summary="noise reduction by spectral gating (noisereduce): cleaned WAV or FLAC",
    warm="tasks.denoise:warm",
    # ~1/30 of real time: 600 s of audio needs ~20 s.
    operations=(
        Operation(
            function="tasks.denoise:denoise",
            help="the cleaned audio and how much noise was removed",
            options={
                "format": Option(
                    "choice", "wav", "container of the answer", choices=("wav", "flac")
                ),
                "stationary": Option("flag", False, "one noise profile for the whole clip"),
                "prop_decrease": Option(
                    "number", 1.0, "share of the noise removed", low=0.0, high=1.0
                ),
            },
            soft_time_limit=120,
            time_limit=150,
        ),
    ),
)

# The languages of Whisper's multilingual models (ISO 639-1, and "haw"), as its tokenizer
# names them; "auto" detects the language from the first 30 s.
WHISPER_LANGUAGES = (
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy",
    "da", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw",
    "he", "hi", "hr", "ht", "hu", "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn",
    "ko", "la", "lb", "ln", "lo", "lt", "lv", "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt",
    "my", "ne", "nl", "nn", "no", "oc", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si",
    "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl",
    "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh",
)  # fmt: skip

WHISPER = Algorithm(
    name="whisper",
    summary="speech recognition and translation (Whisper on CTranslate2): 99 languages",
    warm="tasks.whisper:warm",
    check="tasks.whisper:check",
    # int8 on 2 threads: Whisper base runs at ~0.15 x real time on this kind of CPU; one
    # process holds the model (~145 MB) and CTranslate2's buffers.
    resources=Resources(threads=2, memory_mb=500),
    operations=(
        Operation(
            function="tasks.whisper:transcribe",
            help="transcribe (or translate to English): text, words with start/end/probability,"
            " segments, the language",
            options={
                "language": Option(
                    "choice",
                    "auto",
                    "language spoken, or auto",
                    choices=("auto", *WHISPER_LANGUAGES),
                ),
                "task": Option(
                    "choice",
                    "transcribe",
                    "transcribe, or translate to English",
                    choices=("transcribe", "translate"),
                ),
                "beam_size": Option(
                    "integer", 1, "beam width: 1 is greedy, 5 Whisper's own", low=1, high=10
                ),
                "vad_filter": Option("flag", False, "skip non-speech first (Silero VAD)"),
                "initial_prompt": Option(
                    "text", None, "text that comes before: names, terms, style", max_chars=200
                ),
            },
            # ~0.15 x real time on 2 threads: 600 s needs ~90 s, more on a busy machine.
            soft_time_limit=420,
            time_limit=480,
        ),
    ),
)

# On CUDA the card does the model's work: the host's share (features, word alignment) is
# numpy on one thread, and one process per GPU (`-c 1`, CUDA_VISIBLE_DEVICES) holds the
# model in the card's memory. Host memory is an estimate (the CUDA runtime and cuBLAS
# are mapped into the process), not a measurement: no GPU was at hand.
WHISPER_CUDA_RESOURCES = Resources(threads=1, gpu=True, memory_mb=1500)
# Requests (30 s windows at most) in one batched pass: SPEECH_BATCH_SIZE lowers it, e.g.
# for a large model on a card with little memory.
WHISPER_MAX_BATCH = 16

BUILTINS: tuple[Algorithm, ...] = (ASR, VAD, SPEAKER, FEATURES, DENOISE, WHISPER)


def whisper_batched(device: str, batch: str) -> bool:
    """Whether whisper runs requests that arrive together in one pass: SPEECH_WHISPER_BATCH
    "on" or "off", or "auto": on CUDA only. "auto" does not probe a device set to "auto":
    the worker's main process must not touch CUDA before its pool forks."""
    return batch == "on" or (batch == "auto" and device == "cuda")


def builtins(device: str = "cpu", batch: str = "auto") -> tuple[Algorithm, ...]:
    """The built-ins as a worker with these whisper settings (SPEECH_WHISPER_DEVICE,
    SPEECH_WHISPER_BATCH) runs them: on CUDA whisper declares a GPU's resources, and when
    batched its batch function (tasks.whisper:transcribe_batch)."""
    whisper = WHISPER
    if device == "cuda":
        whisper = replace(whisper, resources=WHISPER_CUDA_RESOURCES)
    if whisper_batched(device, batch):
        (operation,) = whisper.operations
        batched = replace(
            operation, batch="tasks.whisper:transcribe_batch", max_batch=WHISPER_MAX_BATCH
        )
        whisper = replace(whisper, operations=(batched,))
    return tuple(whisper if a is WHISPER else a for a in BUILTINS)
