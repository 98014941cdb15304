"""Serial ports in memory for ``EZA2500Device`` (each an ``eza2500.eza2500_device.SerialPort``):
``FakePort`` replays scripted chunks, ``NoisePort`` is a line of continuous random noise."""
import random
import time


class FakePort:
    """A pyserial-like port replaying scripted chunks; empty reads wait a
    little like a port with a 10 ms timeout would."""

    def __init__(self, chunks=(), fail_read=None):
        self.chunks = [bytes(c) for c in chunks]
        self.fail_read = fail_read
        self.timeout = None
        self.is_open = True
        self.written = []
        self.calls = []
        self.port = "/dev/fake"

    @property
    def in_waiting(self):
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, n):
        self.calls.append(("read", n))
        if self.fail_read:
            raise self.fail_read
        if not self.chunks:
            time.sleep(0.001)
            return b""
        head = self.chunks[0]
        out, rest = head[:n], head[n:]
        if rest:
            self.chunks[0] = rest
        else:
            self.chunks.pop(0)
        return out

    def write(self, data):
        self.calls.append(("write", bytes(data)))
        self.written.append(bytes(data))
        return len(data)

    def reset_input_buffer(self):
        self.calls.append(("reset",))

    def open(self):
        self.calls.append(("open",))
        self.is_open = True

    def close(self):
        self.calls.append(("close",))
        self.is_open = False


class NoisePort:
    """A port on a line of continuous random noise: every read returns at once."""

    def __init__(self, seed=1):
        self.rng = random.Random(seed)
        self.timeout = None
        self.port = "/dev/noise"
        self.is_open = True
        self.in_waiting = 512

    def read(self, n):
        return self.rng.randbytes(n)

    def write(self, data):
        return len(data)

    def reset_input_buffer(self):
        pass

    def open(self):
        self.is_open = True

    def close(self):
        self.is_open = False
