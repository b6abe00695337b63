#!/usr/bin/env python3
"""The answering-machine detection corpus: what a dialer hears after the
answer, as 8 kHz mono mu-law (raw `.ulaw`, what SIPp's `rtp_stream` plays and
what herald's media path carries), one file per item, and `manifest.csv`
saying what each item is and where its events are.

Classes (ITEMS of each, 200 by default):
  human_short        "Hello?", "Yes?", ... then silence
  human_long         a longer live answer (up to about 2 s), then silence
  human_late         0.5 to 3 s of carrier silence, then a short answer
  machine_beep       0 to 5 s of carrier silence, a voicemail greeting, a beep
                     (440 to 2,000 Hz, 200 to 1,000 ms), then silence
  machine_no_beep    the same greeting, no beep, then silence
  silence            carrier silence (a little comfort noise)
  noise              line noise at several levels
  fax                a calling fax's CNG (1,100 Hz, 0.5 s on, 3 s off) or an
                     answering fax's CED (2,100 Hz, 2.6 to 4 s)

Speech comes from espeak-ng (English voices and variants) and flite (its
voices), at several speeds and pitches; every item goes through sox: a
telephone band-pass (300-3,400 Hz), added noise, a mu-law round trip, and
20 ms frames lost at random (about 2%, zeroed). Seeded: the same seed makes
the same corpus. Nothing here is committed as audio.

Usage: amd_corpus.py OUT_DIR [--items N] [--seed S]
Needs espeak-ng, flite and sox (Debian packages of those names); installs
them with apt when missing, saying so.
"""

import argparse
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile

RATE = 8000
FRAME = 160  # 20 ms

SHORT = ["Hello?", "Yes?", "Hi.", "Hello.", "Yeah, hello?", "Who's this?", "Hi, who is it?",
         "Hello, yes?", "Speaking.", "Hello there."]
LONG = ["Hello, this is Pat speaking.", "Hi, yes, this is the Doe residence.",
        "Hello? Sorry, who is calling please?", "Good morning, Sam speaking.",
        "Yes, hello, can I help you?", "Hi there, you've got Alex."]
GREETINGS = [
    "Hi, you've reached {name}. I can't take your call right now. Please leave a message after the tone.",
    "Hello, this is {name}. Sorry I missed you. Leave your name and number and I'll call you back.",
    "The person you are calling is not available. Please record your message after the tone. When you are finished, hang up.",
    "You have reached the voicemail of {name}. Please leave a message.",
    "Thanks for calling {name}. We are away from the phone. Leave a message and we will return your call as soon as possible.",
    "Hey, it's {name}. Leave a message.",
]
NAMES = ["Pat Doe", "Jordan", "the Smith family", "Dr. Lee's office", "Maria", "Chris Walker"]
ESPEAK_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-us+f2", "en-us+m3",
                 "en-gb+f4", "en-us+m7", "en-gb-x-gbcwmd", "en-us+f5"]
FLITE_VOICES = ["kal", "awb", "rms", "slt"]

CLASSES = ["human_short", "human_long", "human_late", "machine_beep", "machine_no_beep",
           "silence", "noise", "fax"]
# What a detector should answer for each class.
EXPECTED = {
    "human_short": "human", "human_long": "human", "human_late": "human",
    "machine_beep": "machine_end_beep", "machine_no_beep": "machine_end_silence",
    "silence": "unknown", "noise": "unknown", "fax": "fax",
}


def ensure_tools():
    missing = [t for t in ("espeak-ng", "flite", "sox") if shutil.which(t) is None]
    if not missing:
        return
    print(f"amd_corpus: installing {' '.join(missing)} (Debian packages)", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, stdout=sys.stderr)


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def seconds(path):
    out = subprocess.run(["soxi", "-D", path], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def speak(rng, text, out):
    """`text` spoken by a random voice at a random speed and pitch, as 8 kHz mono WAV."""
    raw = out + ".tts.wav"
    if rng.random() < 0.6:
        run("espeak-ng", "-v", rng.choice(ESPEAK_VOICES), "-s", str(rng.randint(130, 210)),
            "-p", str(rng.randint(25, 75)), "-w", raw, text)
    else:
        run("flite", "-voice", rng.choice(FLITE_VOICES), "-t", text, "-o", raw,
            "--setf", f"duration_stretch={rng.uniform(0.8, 1.25):.2f}",
            "--setf", f"int_f0_target_mean={rng.randint(90, 200)}")
    run("sox", raw, "-r", str(RATE), "-c", "1", "-b", "16", out, "norm", f"-{rng.uniform(1, 12):.1f}")
    os.remove(raw)


def silence(out, secs):
    run("sox", "-n", "-r", str(RATE), "-c", "1", "-b", "16", out, "trim", "0", f"{secs:.3f}")


def tone(out, hz, secs, db=-6.0):
    run("sox", "-n", "-r", str(RATE), "-c", "1", "-b", "16", out, "synth", f"{secs:.3f}",
        "sine", str(hz), "gain", f"{db:.1f}")


def noise(rng, out, secs, db):
    run("sox", "-n", "-r", str(RATE), "-c", "1", "-b", "16", out, "synth", f"{secs:.3f}",
        rng.choice(["whitenoise", "pinknoise", "brownnoise"]), "gain", f"{db:.1f}")


def concat(parts, out):
    run("sox", *parts, out)


def line(rng, src, out):
    """Telephone band, a noise floor, mu-law and back, lost frames."""
    secs = seconds(src)
    floor = src + ".floor.wav"
    noise(rng, floor, secs, rng.uniform(-70, -45))
    banded = src + ".band.wav"
    run("sox", "-m", src, floor, banded, "sinc", "300-3400")
    run("sox", banded, "-t", "ul", "-r", str(RATE), "-c", "1", out)
    for f in (floor, banded):
        os.remove(f)
    data = bytearray(open(out, "rb").read())
    for start in range(0, len(data) - FRAME, FRAME):
        if rng.random() < 0.02:
            data[start:start + FRAME] = b"\xff" * FRAME  # mu-law silence
    open(out, "wb").write(bytes(data))


def item(rng, cls, work, i):
    """Builds one item's WAV; returns (path, events: dict of ms marks)."""
    p = lambda name: os.path.join(work, f"{cls}{i}.{name}.wav")
    marks = {}
    parts = []
    if cls in ("human_short", "human_long", "human_late"):
        if cls == "human_late":
            lead = rng.uniform(0.5, 3.0)
            silence(p("lead"), lead)
            parts.append(p("lead"))
            marks["speech_start_ms"] = int(lead * 1000)
        else:
            marks["speech_start_ms"] = 0
        # A live answer, even a long one, is over in about two seconds; a
        # voice too slow for that is drawn again.
        for _ in range(8):
            speak(rng, rng.choice(LONG if cls == "human_long" else SHORT), p("say"))
            if seconds(p("say")) <= 2.2:
                break
        else:
            run("sox", p("say"), p("cut"), "trim", "0", "2.2")
            os.replace(p("cut"), p("say"))
        parts.append(p("say"))
        marks["speech_end_ms"] = marks["speech_start_ms"] + int(seconds(p("say")) * 1000)
        silence(p("tail"), 6.0)
        parts.append(p("tail"))
    elif cls in ("machine_beep", "machine_no_beep"):
        lead = rng.uniform(0.0, 5.0)
        if lead > 0.02:
            silence(p("lead"), lead)
            parts.append(p("lead"))
        speak(rng, rng.choice(GREETINGS).format(name=rng.choice(NAMES)), p("greet"))
        parts.append(p("greet"))
        marks["speech_start_ms"] = int(lead * 1000)
        marks["speech_end_ms"] = marks["speech_start_ms"] + int(seconds(p("greet")) * 1000)
        gap = rng.uniform(0.2, 0.9)
        silence(p("gap"), gap)
        parts.append(p("gap"))
        if cls == "machine_beep":
            hz = rng.randint(440, 2000)
            length = rng.uniform(0.2, 1.0)
            tone(p("beep"), hz, length, rng.uniform(-14, -3))
            parts.append(p("beep"))
            marks["beep_start_ms"] = marks["speech_end_ms"] + int(gap * 1000)
            marks["beep_end_ms"] = marks["beep_start_ms"] + int(length * 1000)
            marks["beep_hz"] = hz
        silence(p("tail"), 6.0)
        parts.append(p("tail"))
    elif cls == "silence":
        silence(p("all"), 8.0)
        parts.append(p("all"))
    elif cls == "noise":
        noise(rng, p("all"), 8.0, rng.uniform(-40, -15))
        parts.append(p("all"))
    else:  # fax
        if rng.random() < 0.5:
            marks["fax_tone_hz"] = 1100
            for k in range(3):
                tone(p(f"cng{k}"), 1100, 0.5, -10)
                silence(p(f"off{k}"), 3.0)
                parts += [p(f"cng{k}"), p(f"off{k}")]
        else:
            marks["fax_tone_hz"] = 2100
            tone(p("ced"), 2100, rng.uniform(2.6, 4.0), -10)
            silence(p("tail"), 3.0)
            parts += [p("ced"), p("tail")]
    whole = p("whole")
    if len(parts) == 1:
        shutil.copy(parts[0], whole)
    else:
        concat(parts, whole)
    return whole, marks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    ensure_tools()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    fields = ["file", "class", "expected", "speech_start_ms", "speech_end_ms",
              "beep_start_ms", "beep_end_ms", "beep_hz", "fax_tone_hz"]
    with open(os.path.join(a.out, "manifest.csv"), "w", newline="") as m, \
            tempfile.TemporaryDirectory() as work:
        w = csv.DictWriter(m, fieldnames=fields)
        w.writeheader()
        for cls in CLASSES:
            for i in range(a.items):
                wav, marks = item(rng, cls, work, i)
                name = f"{cls}_{i:04d}.ulaw"
                line(rng, wav, os.path.join(a.out, name))
                for f in os.listdir(work):
                    os.remove(os.path.join(work, f))
                w.writerow({"file": name, "class": cls, "expected": EXPECTED[cls], **marks})
            print(f"amd_corpus: {a.items} {cls}", file=sys.stderr)


if __name__ == "__main__":
    main()
