"""cryptography: a Rust extension that imports _cffi_backend from C."""
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def main():
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"frost")
    value = digest.finalize().hex()
    assert value == "d7bf0c9ea6ea590ff1a44ef444aa38d0db5491e29fab83efbbbe882ac9314e84", value
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, b"secret message", b"header")
    assert AESGCM(key).decrypt(nonce, sealed, b"header") == b"secret message"
    print("ok cryptography", value[:16], len(sealed))


if __name__ == "__main__":
    main()
