"""LSB encoding (white-box, post-processing): the secret in the low bits of the weights.

Train honestly, then overwrite the lowest ``bits`` bits of every carrier with the payload
(compressed secret, optionally encrypted and Reed-Solomon protected, framed with its length
and CRC -- see :mod:`covertml.attacks.payload`). The paper reports that roughly 18-26 low
bits of a float32 can be overwritten with negligible accuracy change.

Models are mostly released in float16 or bfloat16. With ``dtype`` set to one of those, the
trained model is first rounded to it (every float tensor, so what is evaluated is what is
released) and the payload goes into the low bits of the carriers' 16-bit words: up to 10
bits of a float16 mantissa, 7 of a bfloat16. The values stay exactly representable in the
release format, so saving in it (covertml does) keeps every payload bit; the key records
the format, and decoding converts the carriers to it first, whatever dtype they were
loaded in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from covertml.attacks import payload as pl
from covertml.attacks.base import Attack, AttackPlan, register_attack
from covertml.attacks.bits import capacity_bytes, check_bits, embed_words, extract_words
from covertml.attacks.carriers import CarrierMap, Rule
from covertml.attacks.key import AttackKey
from covertml.attacks.secrets import Secret, secret_from_dataset
from covertml.data.base import Dataset
from covertml.errors import ConfigError
from covertml.floats import FLOAT32, FloatFormat, float_format, require_format

log = logging.getLogger(__name__)


def serialize(secret: Secret) -> bytes:
    """The secret's symbols as bytes: 1 per pixel, 2 or 4 (big-endian) per token id."""
    if secret.levels <= 256:
        return secret.values.astype(np.uint8).tobytes()
    dtype = ">u2" if secret.levels <= 65536 else ">u4"
    return secret.values.astype(dtype).tobytes()


def deserialize(data: bytes, levels: int) -> np.ndarray:
    """Inverse of :func:`serialize`."""
    dtype = "u1" if levels <= 256 else (">u2" if levels <= 65536 else ">u4")
    width = np.dtype(dtype).itemsize
    if len(data) % width:
        raise pl.PayloadError("the payload length does not match the secret", fix=pl.DAMAGE_FIX)
    return np.frombuffer(data, dtype=dtype).astype(np.int64)


def round_to(model: nn.Module, fmt: FloatFormat) -> None:
    """Rounds every float parameter and buffer of ``model`` to ``fmt``, in place.

    Example:
        >>> from covertml.floats import BFLOAT16
        >>> layer = torch.nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.weight.fill_(1 + 2**-12)
        >>> round_to(layer, BFLOAT16)
        >>> layer.weight.tolist()
        [[1.0, 1.0]]
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(fmt.torch_dtype).to(tensor.dtype))


@register_attack
@dataclass(frozen=True, kw_only=True)
class LSBAttack(Attack):
    """LSB encoding: the compressed secret in the low bits of every carrier.

    Args:
        bits: Low bits overwritten per carrier (1-31).
        compression: ``lzma`` (default, smallest here), ``zlib``, ``png-gzip`` (the paper's)
            or ``none``.
        passphrase: Encrypt with ChaCha20-Poly1305 under a key derived from it.
        ecc_symbols: Reed-Solomon parity bytes per 255-byte block (0 = off).
        carrier_rule: ``weights`` (default) or ``all-float`` (also biases and batch-norm
            statistics, as the paper's reference code does).
        dtype: The release format: ``float32`` (default; 1-31 bits), ``float16`` (1-10
            bits) or ``bfloat16`` (1-7 bits).

    Example:
        >>> from covertml.data import create_dataset
        >>> from covertml.models import create_model_for
        >>> ds = create_dataset("digits")
        >>> model = create_model_for(ds)
        >>> plan = LSBAttack(bits=16).plan(model, ds, n_secrets=20)
        >>> for step in plan.post_steps:
        ...     step(model)
        >>> recovered = LSBAttack.decode(model, plan.key)
        >>> bool((recovered.values == plan.secret.values).all())
        True
    """

    name: ClassVar[str] = "lsb"
    threat: ClassVar = "white-box"
    trains_honestly: ClassVar[bool] = True

    bits: int = 16
    compression: pl.Compression = "lzma"
    passphrase: str | None = None
    ecc_symbols: int = 0
    carrier_rule: Rule = "weights"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_bits(self.bits)
        fmt = float_format(self.dtype)
        if fmt is None:
            raise ConfigError(
                f"unknown release dtype {self.dtype!r}", fix="use float32, float16 or bfloat16"
            )
        if fmt is not FLOAT32 and self.bits > fmt.mantissa:
            raise ConfigError(
                f"{self.bits} bits exceed the {fmt.mantissa}-bit mantissa of {fmt.name}",
                fix=f"use --bits {fmt.mantissa} or fewer for {fmt.name} releases",
            )

    @property
    def format(self) -> FloatFormat:
        """The release :class:`~covertml.floats.FloatFormat`."""
        return require_format(self.dtype)
        if self.compression not in pl.COMPRESSIONS:
            raise ConfigError(
                f"unknown compression {self.compression!r}",
                fix="use one of: " + ", ".join(pl.COMPRESSIONS),
            )
        if not 0 <= self.ecc_symbols < 255 or self.ecc_symbols % 2:
            raise ConfigError("ecc_symbols must be even and below 255", fix="e.g. 32")

    def _encode(self, secret: Secret) -> bytes:
        body = pl.compress(serialize(secret), self.compression, image_shape=secret.image_shape)
        return pl.frame(body, passphrase=self.passphrase, ecc_symbols=self.ecc_symbols)

    def _framed_len(self, secret: Secret) -> int:
        body = pl.compress(serialize(secret), self.compression, image_shape=secret.image_shape)
        return pl.framed_size(
            len(body), encrypted=self.passphrase is not None, ecc_symbols=self.ecc_symbols
        )

    def _fit(self, secret: Secret, capacity: int, n_secrets: int | None) -> Secret:
        if self.compression == "png-gzip" and secret.kind != "image":
            raise ConfigError("png-gzip compresses images only", fix="use lzma or zlib for text")
        if n_secrets is not None:
            if n_secrets > secret.count:
                raise ConfigError(
                    f"asked for {n_secrets} secret items but the training set has {secret.count}",
                    fix=f"use --n-secrets {secret.count} or fewer",
                )
            chosen = secret.first(n_secrets)
            need = self._framed_len(chosen)
            if need > capacity:
                raise ConfigError(
                    f"{n_secrets} secret items need {need:,} payload bytes but the carriers "
                    f"hold {capacity:,} at {self.bits} bits",
                    fix=f"use fewer --n-secrets (about {self._max_fit(secret, capacity)}) "
                    "or more --bits",
                )
            return chosen
        n = self._max_fit(secret, capacity)
        if n == 0:
            raise ConfigError(
                f"not even one secret item fits in {capacity:,} payload bytes",
                fix="use more --bits or a larger model",
            )
        return secret.first(n)

    def _max_fit(self, secret: Secret, capacity: int) -> int:
        """The largest n whose framed payload fits, in few compressions.

        Estimates n from the compression ratio of a prefix, brackets it by 10% steps, then
        bisects. Every compression of a large secret (over 2M symbols) costs seconds, so
        there it stops once the bracket is within 0.5% of n.
        """

        def fits(n: int) -> bool:
            return n == 0 or self._framed_len(secret.first(n)) <= capacity

        count = secret.count
        probe = min(count, max(1, secret.fit_count(max(capacity, 1))))
        ratio = max(self._framed_len(secret.first(probe)) / max(secret.size_of(probe), 1), 1e-3)
        guess = max(1, min(count, secret.fit_count(int(capacity / ratio))))
        if fits(guess):
            lo, hi = guess, min(count, int(guess * 1.1) + 1)
            while lo < count and fits(hi):
                lo, hi = hi, min(count, int(hi * 1.1) + 1)
            if lo == count:
                return count
        else:
            hi, lo = guess, int(guess * 0.9)
            while lo > 0 and not fits(lo):
                hi, lo = lo, int(lo * 0.9)
        slack = lo // 200 if secret.size_of(lo) > 2_000_000 else 0  # exact for small secrets
        while hi - lo > max(1, slack):
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def plan(
        self, model: nn.Module, dataset: Dataset, *, n_secrets: int | None = None, seed: int = 0
    ) -> AttackPlan:
        """Chooses the secret and returns the post-training step that embeds it."""
        cmap = CarrierMap.from_model(model, rule=self.carrier_rule)
        capacity = capacity_bytes(cmap.size, self.bits)
        full = secret_from_dataset(dataset)
        secret = self._fit(full, capacity, n_secrets)
        bits, fmt = self.bits, self.format

        def embed(trained: nn.Module) -> None:
            if fmt is not FLOAT32:
                round_to(trained, fmt)
            data = self._encode(secret)  # encrypted payloads get a fresh salt and nonce
            cmap.write_words(trained, embed_words(cmap.read_words(trained, fmt), data, bits), fmt)
            log.info(
                "LSB: wrote %d payload bytes into %d %s carriers", len(data), cmap.size, fmt.name
            )

        key = self.make_key(secret, carriers=cmap, seed=seed, model=model, dataset=dataset)
        return AttackPlan(secret, key, post_steps=(embed,), release_dtype=fmt.name)

    @classmethod
    def decode(cls, model: nn.Module, key: AttackKey) -> Secret:
        """Reads the payload back from the low bits and decompresses it."""
        assert key.carriers is not None
        s = key.settings
        words = key.carriers.read_words(model, require_format(s.get("dtype", "float32")))
        bits = int(s["bits"])
        capacity = capacity_bytes(words.shape[0], bits)
        body = pl.unframe(
            lambda n: extract_words(words, bits, n),
            passphrase=s.get("passphrase"),
            ecc_symbols=int(s.get("ecc_symbols", 0)),
            capacity=capacity,
        )
        values = deserialize(pl.decompress(body, s["compression"]), int(key.secret["levels"]))
        expected = Secret.spec_symbols(key.secret)
        if values.size != expected:
            raise pl.PayloadError(
                f"the payload holds {values.size} symbols but the key expects {expected}",
                fix="use the key written for this model",
            )
        return Secret.from_spec(key.secret, values)
