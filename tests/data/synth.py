"""Make the test speech with Debian's flite and espeak-ng: `python tests/data/synth.py`.

Writes one WAV per (sentence, voice) into tests/data/ and their transcripts into
transcripts.json. flite's kal16, awb and rms voices are recognised well by pocketsphinx.
One German sentence (espeak-ng, not in transcripts.json: only whisper knows German) tests
language detection.
"""

import json
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SENTENCES = {
    "fox": "the quick brown fox jumps over the lazy dog",
    "weather": "the weather today is sunny with a light wind from the west",
    "meeting": "please send the report to the team before the meeting on monday",
    "numbers": "she bought three apples and two oranges at the market",
}
VOICES = ("kal16", "awb", "rms")
GERMAN = ("weather_de_espeak.wav", "das Wetter ist heute sonnig und es weht ein leichter Wind")


def main() -> None:
    transcripts = {}
    for key, text in SENTENCES.items():
        for voice in VOICES:
            name = f"{key}_{voice}.wav"
            subprocess.run(
                ["flite", "-voice", voice, "-t", text, "-o", str(HERE / name)], check=True
            )
            transcripts[name] = text
    (HERE / "transcripts.json").write_text(json.dumps(transcripts, indent=2) + "\n")
    name, text = GERMAN
    subprocess.run(["espeak-ng", "-v", "de", "-w", str(HERE / name), text], check=True)


if __name__ == "__main__":
    main()
