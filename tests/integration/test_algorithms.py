"""vad, speaker, features and denoise end to end: producer -> RabbitMQ -> real workers."""

import librosa
import numpy as np
import pytest

from producer import Client, InvalidOptions
from tests.helpers import DATA
from tests.signals import RATE, clip, read, silence, snr_db, stitch, wav, white_noise

pytestmark = pytest.mark.slow  # warms workers of every algorithm


@pytest.mark.usefixtures("vad_worker")
def test_vad_finds_two_segments_in_speech_silence_speech(client: Client) -> None:
    # Given speech, 2 s of silence, speech, with half a second of silence around
    audio, spans = stitch([0.5, clip("fox_kal16.wav"), 2.0, clip("weather_awb.wav"), 0.5])
    # When vad runs on it (without padding, to compare edges)
    result = client.vad(wav(audio), pad=0.0)
    # Then it finds the two clips, each edge within 0.25 s
    assert len(result["segments"]) == 2, result
    for seg, (start, end) in zip(result["segments"], spans, strict=True):
        assert seg["start"] == pytest.approx(start, abs=0.25)
        assert seg["end"] == pytest.approx(end, abs=0.25)
    assert result["duration"] == pytest.approx(len(audio) / RATE, abs=0.01)


@pytest.mark.usefixtures("vad_worker")
def test_vad_options_change_the_answer_and_bad_ones_are_refused(client: Client) -> None:
    audio, _ = stitch([clip("fox_kal16.wav"), 0.6, clip("fox_rms.wav")])
    assert len(client.vad(wav(audio))["segments"]) == 2
    # A pause shorter than min_silence does not split the speech
    assert len(client.vad(wav(audio), min_silence=1.0)["segments"]) == 1
    assert client.vad(wav(silence(2.0)))["segments"] == []
    with pytest.raises(InvalidOptions, match="threshold must be between"):
        client.vad(wav(audio), threshold=3)
    with pytest.raises(InvalidOptions, match="unknown: \\['window'\\]"):
        client.vad(wav(audio), window=5)


@pytest.mark.usefixtures("speaker_worker")
def test_same_voice_scores_higher_than_different_voices(client: Client) -> None:
    voices = ("kal16", "awb", "rms")
    for voice in voices:
        # Given a voice saying one sentence, the same voice saying another, and other voices
        anchor = DATA / f"fox_{voice}.wav"
        same = client.speaker_verify(anchor, DATA / f"weather_{voice}.wav")
        others = [
            client.speaker_verify(anchor, DATA / f"weather_{other}.wav")
            for other in voices
            if other != voice
        ]
        # Then the same voice scores higher than any other voice, and only it is "same"
        assert same["score"] > max(r["score"] for r in others), (voice, same, others)
        assert same["same"] and not any(r["same"] for r in others)


@pytest.mark.usefixtures("speaker_worker")
def test_embedding_is_a_unit_256_vector_agreeing_with_verify(client: Client) -> None:
    a = client.speaker_embed(DATA / "meeting_awb.wav")
    b = client.speaker_embed(DATA / "numbers_awb.wav")
    assert a["embedding"].shape == (256,) and a["embedding"].dtype == np.float32
    assert np.linalg.norm(a["embedding"]) == pytest.approx(1.0, abs=1e-4)
    score = client.speaker_verify(DATA / "meeting_awb.wav", DATA / "numbers_awb.wav")["score"]
    assert float(a["embedding"] @ b["embedding"]) == pytest.approx(score, abs=1e-3)
    # A threshold above every possible score makes even the same clip "different"
    verdict = client.speaker_verify(
        DATA / "meeting_awb.wav", DATA / "meeting_awb.wav", threshold=1.0
    )
    assert verdict["score"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.usefixtures("speaker_worker")
def test_speaker_refuses_audio_without_speech(client: Client) -> None:
    from producer import InvalidAudio

    with pytest.raises(InvalidAudio, match="s of speech; a speaker embedding needs"):
        client.speaker_embed(wav(silence(2.0)))


@pytest.mark.usefixtures("features_worker")
def test_features_agree_with_a_direct_librosa_call(client: Client) -> None:
    # Given a clip, decoded here exactly as the worker decodes it (16 kHz mono float32)
    samples = read((DATA / "meeting_kal16.wav").read_bytes())
    # When the worker computes all four features
    r = client.features(
        DATA / "meeting_kal16.wav", include=["mfcc", "logmel", "f0", "rms"], n_mfcc=20
    )
    # Then each matches librosa called directly with the same parameters
    frame = {"n_fft": 512, "hop_length": 160}
    mel = librosa.feature.melspectrogram(y=samples, sr=RATE, n_mels=64, **frame)
    mfcc = librosa.feature.mfcc(y=samples, sr=RATE, n_mfcc=20, n_mels=64, **frame)
    rms = librosa.feature.rms(y=samples, frame_length=512, hop_length=160)[0]
    f0, _, _ = librosa.pyin(samples, fmin=65, fmax=500, sr=RATE, frame_length=1024, hop_length=160)
    frames = len(r["times"])
    assert frames == mfcc.shape[1] and r["mfcc"].shape == (20, frames)
    np.testing.assert_allclose(r["mfcc"], mfcc, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(r["logmel"], librosa.power_to_db(mel, ref=np.max), atol=1e-3)
    np.testing.assert_allclose(r["rms"], rms, rtol=1e-5, atol=1e-7)
    assert np.array_equal(np.isnan(r["f0"]), np.isnan(f0[:frames]))
    np.testing.assert_allclose(r["f0"], f0[:frames], rtol=1e-4)
    np.testing.assert_allclose(r["times"], np.arange(frames) * 0.01, atol=1e-5)
    # And a male flite voice has a plausible pitch
    assert 70 < np.nanmedian(r["f0"]) < 200


@pytest.mark.usefixtures("features_worker")
def test_features_travel_as_compact_arrays_and_options_are_checked(client: Client) -> None:
    raw = client._rpc("speech.features", "features", [(DATA / "fox_awb.wav").read_bytes()], {}, 60)
    assert set(raw["mfcc"]) == {"dtype", "shape", "data"} and isinstance(raw["mfcc"]["data"], bytes)
    assert (
        raw["mfcc"]["dtype"] == "<f4"
        and len(raw["mfcc"]["data"]) == 4 * 13 * raw["mfcc"]["shape"][1]
    )
    assert set(client.features(DATA / "fox_awb.wav", include="rms")) >= {"rms", "times"}
    # Refused by the Client before sending, and by the worker from the same declaration
    fox = (DATA / "fox_awb.wav").read_bytes()
    for bad, message in [
        ({"include": ["pitch"]}, "include must be a list of \\['mfcc', 'logmel', 'f0', 'rms'\\]"),
        ({"n_mfcc": "many"}, "n_mfcc must be a number, got str 'many'"),
    ]:
        with pytest.raises(InvalidOptions, match=message):
            client.features(fox, **bad)
        with pytest.raises(InvalidOptions, match=message):
            client._rpc("speech.features", "features", [fox], bad, 60)


@pytest.mark.usefixtures("denoise_worker")
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_denoise_raises_the_snr_of_speech_in_white_noise(client: Client, fmt: str) -> None:
    # Given speech buried in white noise of the same power (SNR 0 dB)
    clean, _ = stitch([0.5, clip("fox_kal16.wav"), 0.5, clip("weather_awb.wav"), 0.5])
    noisy = clean + white_noise(len(clean), rms=float(np.sqrt(np.mean(clean**2))))
    # When it is denoised
    r = client.denoise(wav(noisy), format=fmt)
    cleaned = read(r["audio"])
    # Then the audio comes back whole, in the asked format, with a better SNR
    assert r["format"] == fmt and r["sample_rate"] == RATE and len(cleaned) == len(clean)
    before, after = snr_db(clean, noisy), snr_db(clean, cleaned)
    assert after > before + 1.5, (before, after)  # measured: +3.0 dB
    assert -30 < r["removed_dbfs"] < 0 and r["removed_share_db"] < 0


@pytest.mark.usefixtures("denoise_worker")
def test_denoise_options_are_checked(client: Client) -> None:
    with pytest.raises(InvalidOptions, match="format must be one of"):
        client.denoise(DATA / "fox_awb.wav", format="mp3")
    with pytest.raises(InvalidOptions, match="prop_decrease must be between 0 and 1"):
        client.denoise(DATA / "fox_awb.wav", prop_decrease=2)
