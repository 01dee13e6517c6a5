/**
 * Signing and verifying device readings with either curve. One implementation for the device
 * SDK (signing), the oracle (verifying) and the tests.
 *
 * On the wire a signature may come in any of the encodings the protocol allows (65-byte
 * r‖s‖v, 64-byte compact or r‖s, ASN.1 DER). `verifyReadingSignature` checks it and returns
 * the canonical on-chain form: 65 bytes r‖s‖v (v = 27/28) for secp256k1, 64 bytes r‖s for
 * P-256. High-s signatures are refused as malleable, as the contracts refuse them.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { createRequire } from "node:module";
import type { Hex } from "viem";
import {
  bytesToHex,
  hexToBytes,
  keccak256,
  readingDigest,
  type Reading,
  type ReadingDomain,
} from "./eip712.ts";

const require = createRequire(import.meta.url);
/** libsecp256k1 bindings (prebuilt native code; falls back to pure JS when unavailable). */
const secp256k1 = require("secp256k1") as typeof import("secp256k1");

export type KeyType = "secp256k1" | "p256";

/** A device's public key as registered on-chain. */
export type DevicePublicKey =
  { keyType: "secp256k1"; address: Hex } | { keyType: "p256"; x: Hex; y: Hex };

export const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
export const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

export type VerifyResult =
  | { ok: true; signature: Hex }
  | { ok: false; reason: "bad_signature" | "malleable_signature"; detail: string };

interface RawSignature {
  r: Uint8Array;
  s: Uint8Array;
  /** Recovery id 0/1 when the encoding carried one. */
  recoveryId?: number;
}

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(bytesToHex(bytes));
}

function to32(value: bigint): Uint8Array {
  return hexToBytes(value.toString(16).padStart(64, "0"));
}

/** Parses an ASN.1 DER ECDSA signature (SEQUENCE { INTEGER r, INTEGER s }), strictly. */
export function parseDerSignature(der: Uint8Array): { r: Uint8Array; s: Uint8Array } | undefined {
  if (der.length < 8 || der.length > 72 || der[0] !== 0x30 || der[1] !== der.length - 2) {
    return undefined;
  }
  let offset = 2;
  const ints: Uint8Array[] = [];
  for (let i = 0; i < 2; i++) {
    if (der[offset] !== 0x02) return undefined;
    const length = der[offset + 1]!;
    const start = offset + 2;
    if (length === 0 || length > 33 || start + length > der.length) return undefined;
    let value = der.subarray(start, start + length);
    // Minimal encoding: no leading zero unless the next byte has its high bit set; no negatives.
    if (value[0]! & 0x80) return undefined;
    if (value[0] === 0 && (value.length === 1 || !(value[1]! & 0x80))) return undefined;
    if (value[0] === 0) value = value.subarray(1);
    if (value.length > 32) return undefined;
    const padded = new Uint8Array(32);
    padded.set(value, 32 - value.length);
    ints.push(padded);
    offset = start + length;
  }
  if (offset !== der.length) return undefined;
  return { r: ints[0]!, s: ints[1]! };
}

/** Encodes r and s as ASN.1 DER. */
export function encodeDerSignature(r: Uint8Array, s: Uint8Array): Uint8Array {
  const int = (value: Uint8Array): number[] => {
    let i = 0;
    while (i < value.length - 1 && value[i] === 0) i++;
    const body = Array.from(value.subarray(i));
    if (body[0]! & 0x80) body.unshift(0);
    return [0x02, body.length, ...body];
  };
  const content = [...int(r), ...int(s)];
  return Uint8Array.from([0x30, content.length, ...content]);
}

function decodeSignature(keyType: KeyType, bytes: Uint8Array): RawSignature | undefined {
  if (bytes.length === 65 && keyType === "secp256k1") {
    const v = bytes[64]!;
    const recoveryId = v >= 27 ? v - 27 : v;
    if (recoveryId !== 0 && recoveryId !== 1) return undefined;
    return { r: bytes.slice(0, 32), s: bytes.slice(32, 64), recoveryId };
  }
  if (bytes.length === 64) {
    if (keyType === "p256") return { r: bytes.slice(0, 32), s: bytes.slice(32, 64) };
    // EIP-2098 compact: the top bit of s carries the recovery id.
    const s = bytes.slice(32, 64);
    const recoveryId = s[0]! >> 7;
    s[0]! &= 0x7f;
    return { r: bytes.slice(0, 32), s, recoveryId };
  }
  if (bytes[0] === 0x30) return parseDerSignature(bytes);
  return undefined;
}

const addressCache = new Map<string, string>();

function secp256k1Address(publicKey: Uint8Array): string {
  return `0x${Buffer.from(keccak256(publicKey.subarray(1)))
    .subarray(12)
    .toString("hex")}`;
}

const p256KeyCache = new Map<string, KeyObject>();

/** A Node KeyObject for a P-256 public key given by its affine coordinates. */
export function p256PublicKeyObject(x: Hex, y: Hex): KeyObject {
  const cacheKey = `${x}${y}`.toLowerCase();
  let key = p256KeyCache.get(cacheKey);
  if (key === undefined) {
    key = createPublicKey({
      key: {
        kty: "EC",
        crv: "P-256",
        x: Buffer.from(hexToBytes(x)).toString("base64url"),
        y: Buffer.from(hexToBytes(y)).toString("base64url"),
      },
      format: "jwk",
    });
    p256KeyCache.set(cacheKey, key);
  }
  return key;
}

/** Checks a signature over a precomputed EIP-712 reading digest. */
export function verifyDigestSignature(
  digest: Uint8Array,
  signatureHex: string,
  key: DevicePublicKey,
): VerifyResult {
  let bytes: Uint8Array;
  try {
    bytes = hexToBytes(signatureHex);
  } catch {
    return { ok: false, reason: "bad_signature", detail: "signature is not hex" };
  }
  const decoded = decodeSignature(key.keyType, bytes);
  if (decoded === undefined) {
    return {
      ok: false,
      reason: "bad_signature",
      detail: `unrecognised ${bytes.length}-byte encoding`,
    };
  }
  const n = key.keyType === "secp256k1" ? SECP256K1_N : P256_N;
  const r = toBigInt(decoded.r);
  const s = toBigInt(decoded.s);
  if (r === 0n || r >= n || s === 0n || s >= n) {
    return { ok: false, reason: "bad_signature", detail: "r or s out of range" };
  }
  if (s > n / 2n) {
    return {
      ok: false,
      reason: "malleable_signature",
      detail: "s is in the upper half of the curve order",
    };
  }
  const rs = new Uint8Array(64);
  rs.set(decoded.r, 0);
  rs.set(decoded.s, 32);

  if (key.keyType === "p256") {
    const ok = verify(
      "sha256",
      digest,
      { key: p256PublicKeyObject(key.x, key.y), dsaEncoding: "ieee-p1363" },
      rs,
    );
    return ok
      ? { ok: true, signature: bytesToHex(rs) }
      : { ok: false, reason: "bad_signature", detail: "P-256 signature does not verify" };
  }

  const expected = key.address.toLowerCase();
  const candidates = decoded.recoveryId === undefined ? [0, 1] : [decoded.recoveryId];
  for (const recoveryId of candidates) {
    let address: string;
    try {
      const cacheKey = `${bytesToHex(rs)}${recoveryId}${bytesToHex(digest)}`;
      address =
        addressCache.get(cacheKey) ??
        secp256k1Address(secp256k1.ecdsaRecover(rs, recoveryId, digest, false));
      if (addressCache.size > 10_000) addressCache.clear();
      addressCache.set(cacheKey, address);
    } catch {
      continue;
    }
    if (address === expected) {
      const out = new Uint8Array(65);
      out.set(rs, 0);
      out[64] = 27 + recoveryId;
      return { ok: true, signature: bytesToHex(out) };
    }
  }
  return {
    ok: false,
    reason: "bad_signature",
    detail: "secp256k1 signature does not recover to the device key",
  };
}

/** Checks a reading's signature by a device key; returns the on-chain encoding when valid. */
export function verifyReadingSignature(
  domain: ReadingDomain,
  reading: Reading,
  signatureHex: string,
  key: DevicePublicKey,
): VerifyResult {
  return verifyDigestSignature(readingDigest(domain, reading), signatureHex, key);
}

/** A device's private key, of either curve. */
export type DeviceSigningKey =
  { keyType: "secp256k1"; privateKey: Hex } | { keyType: "p256"; privateKey: KeyObject };

/** Signs a digest with secp256k1: 65 bytes r‖s‖v, v = 27/28, low s. */
export function signDigestSecp256k1(digest: Uint8Array, privateKey: Hex): Hex {
  const { signature, recid } = secp256k1.ecdsaSign(digest, hexToBytes(privateKey));
  const out = new Uint8Array(65);
  out.set(signature, 0);
  out[64] = 27 + recid;
  return bytesToHex(out);
}

/** Signs a digest with P-256 under ECDSA-SHA256: 64 bytes r‖s, normalised to low s. */
export function signDigestP256(digest: Uint8Array, privateKey: KeyObject): Hex {
  const rs = sign("sha256", digest, { key: privateKey, dsaEncoding: "ieee-p1363" });
  const s = toBigInt(rs.subarray(32));
  if (s > P256_N / 2n) rs.set(to32(P256_N - s), 32);
  return bytesToHex(rs);
}

export function signReading(domain: ReadingDomain, reading: Reading, key: DeviceSigningKey): Hex {
  const digest = readingDigest(domain, reading);
  return key.keyType === "secp256k1"
    ? signDigestSecp256k1(digest, key.privateKey)
    : signDigestP256(digest, key.privateKey);
}

/** The registered public key of a signing key. */
export function publicKeyOf(key: DeviceSigningKey): DevicePublicKey {
  if (key.keyType === "secp256k1") {
    const publicKey = secp256k1.publicKeyCreate(hexToBytes(key.privateKey), false);
    return { keyType: "secp256k1", address: secp256k1Address(publicKey) as Hex };
  }
  const jwk = createPublicKey(key.privateKey).export({ format: "jwk" });
  return {
    keyType: "p256",
    x: bytesToHex(Buffer.from(jwk.x!, "base64url")),
    y: bytesToHex(Buffer.from(jwk.y!, "base64url")),
  };
}

/** Loads a P-256 private key from PKCS#8 (or SEC1) PEM. */
export function p256KeyFromPem(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new TypeError("not a P-256 (prime256v1) EC private key");
  }
  return key;
}

const ZERO_WORD = `0x${"00".repeat(32)}` as Hex;

/** The contract's DeviceKey tuple for a key (keyType 0 = none, 1 = secp256k1 address in x, 2 = P-256). */
export function onChainDeviceKey(key: DeviceSigningKey | undefined): {
  keyType: number;
  x: Hex;
  y: Hex;
} {
  if (key === undefined) return { keyType: 0, x: ZERO_WORD, y: ZERO_WORD };
  const pub = publicKeyOf(key);
  return pub.keyType === "secp256k1"
    ? { keyType: 1, x: `0x${pub.address.slice(2).padStart(64, "0")}` as Hex, y: ZERO_WORD }
    : { keyType: 2, x: pub.x, y: pub.y };
}
