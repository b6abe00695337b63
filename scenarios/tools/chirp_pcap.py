#!/usr/bin/env python3
"""Writes the media-stream test audio: a 1 s chirp (300 -> 3400 Hz) as raw
mu-law 8 kHz mono (scenarios/audio/chirp_1s.ulaw) and the same bytes as an
RTP/PCMU capture for SIPp's play_pcap_audio (scenarios/audio/chirp_1s.pcap:
50 packets of 160 bytes, 20 ms apart, seq 1000.., timestamp 16000..).

Run from the crate root: python3 scenarios/tools/chirp_pcap.py
The output is deterministic.
"""
import math
import struct


def ulaw(sample):
    """G.711 mu-law encoding of one 16-bit sample."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def chirp(seconds=1.0, rate=8000, f0=300.0, f1=3400.0, amp=12000):
    n = int(seconds * rate)
    k = (f1 - f0) / seconds
    out = bytearray()
    for i in range(n):
        t = i / rate
        out.append(ulaw(int(amp * math.sin(2 * math.pi * (f0 * t + k * t * t / 2)))))
    return bytes(out)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pcap(audio, src=("127.0.0.1", 6000), dst=("127.0.0.1", 6002)):
    ip = lambda a: bytes(int(x) for x in a.split("."))
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i in range(len(audio) // 160):
        rtp = struct.pack("!BBHII", 0x80, 0, 1000 + i, 16000 + 160 * i, 0x48455241)
        rtp += audio[160 * i:160 * (i + 1)]
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(rtp), 0) + rtp
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                          ip(src[0]), ip(dst[0]))
        hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
        frame = b"\0" * 12 + b"\x08\x00" + hdr + udp
        usec = 20000 * i
        out += struct.pack("<IIII", usec // 1000000, usec % 1000000, len(frame), len(frame))
        out += frame
    return bytes(out)


if __name__ == "__main__":
    audio = chirp()
    with open("scenarios/audio/chirp_1s.ulaw", "wb") as f:
        f.write(audio)
    with open("scenarios/audio/chirp_1s.pcap", "wb") as f:
        f.write(pcap(audio))
