/**
 * EIP-712 typed data for meter readings: the single definition shared by the device SDK, the
 * oracle and the tests. It mirrors `contracts/libraries/ReadingHash.sol`.
 *
 * Domain: name "PayPerUse", version "1", the chain id and the meter contract's address.
 *
 *   Reading(uint256 agreementId,bytes32 machineId,uint256 cumulativeUnits,uint64 timestamp)
 *   ReadingBatch(Reading[] readings)Reading(uint256 agreementId,bytes32 machineId,uint256 cumulativeUnits,uint64 timestamp)
 *
 * Device keys sign:
 *   - secp256k1: the EIP-712 digest itself (as eth_signTypedData_v4 does), checked on-chain
 *     with ecrecover;
 *   - P-256: the digest as a 32-byte message under ECDSA with SHA-256 (what `openssl dgst
 *     -sha256 -sign`, WebCrypto and secure elements do), checked on-chain as
 *     P256.verify(sha256(digest), r, s, x, y).
 * Oracle signers sign the ReadingBatch digest with secp256k1.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { createKeccak, type IHasher } from "hash-wasm";
import type { Hex } from "viem";

// Keccak-256 compiled to WebAssembly is about five times the speed of the JavaScript implementation,
// and the oracle hashes every reading twice. Its module compiles asynchronously; until it is ready
// (the first milliseconds after start) the JavaScript one answers, with the same result.
let wasmKeccak: IHasher | undefined;
void createKeccak(256).then(
  (hasher) => (wasmKeccak = hasher),
  () => {},
);

/** Keccak-256 (Ethereum's, not FIPS SHA3-256). */
export function keccak256(data: Uint8Array): Uint8Array {
  if (wasmKeccak === undefined) return keccak_256(data);
  wasmKeccak.init();
  wasmKeccak.update(data);
  return wasmKeccak.digest("binary");
}

export interface Reading {
  agreementId: bigint;
  machineId: Hex;
  cumulativeUnits: bigint;
  /** Unix seconds. */
  timestamp: bigint;
}

export interface ReadingDomain {
  chainId: bigint | number;
  verifyingContract: Hex;
}

export const DOMAIN_NAME = "PayPerUse";
export const DOMAIN_VERSION = "1";

export const READING_TYPE =
  "Reading(uint256 agreementId,bytes32 machineId,uint256 cumulativeUnits,uint64 timestamp)";
export const READING_BATCH_TYPE = `ReadingBatch(Reading[] readings)${READING_TYPE}`;

/** viem / ethers style type definitions, for signTypedData. */
export const readingTypes = {
  Reading: [
    { name: "agreementId", type: "uint256" },
    { name: "machineId", type: "bytes32" },
    { name: "cumulativeUnits", type: "uint256" },
    { name: "timestamp", type: "uint64" },
  ],
} as const;

export const readingBatchTypes = {
  ReadingBatch: [{ name: "readings", type: "Reading[]" }],
  ...readingTypes,
} as const;

export function typedDataDomain(domain: ReadingDomain) {
  return {
    name: DOMAIN_NAME,
    version: DOMAIN_VERSION,
    chainId: BigInt(domain.chainId),
    verifyingContract: domain.verifyingContract,
  } as const;
}

const encoder = new TextEncoder();
const EIP712_DOMAIN_TYPEHASH = keccak256(
  encoder.encode(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
  ),
);
export const READING_TYPEHASH = keccak256(encoder.encode(READING_TYPE));
export const READING_BATCH_TYPEHASH = keccak256(encoder.encode(READING_BATCH_TYPE));

const UINT256_MAX = (1n << 256n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

function writeWord(out: Uint8Array, offset: number, value: bigint, max: bigint): void {
  if (value < 0n || value > max) throw new RangeError(`value ${value} out of range`);
  out.set(Buffer.from(value.toString(16).padStart(64, "0"), "hex"), offset);
}

export function hexToBytes(hex: string): Uint8Array {
  const body = hex.startsWith("0x") || hex.startsWith("0X") ? hex.slice(2) : hex;
  if (body.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(body)) {
    throw new TypeError("not an even-length hex string");
  }
  return Uint8Array.from(Buffer.from(body, "hex"));
}

export function bytesToHex(bytes: Uint8Array): Hex {
  return `0x${Buffer.from(bytes).toString("hex")}`;
}

/** hashStruct(Reading). */
export function hashReading(reading: Reading): Uint8Array {
  const buf = new Uint8Array(32 * 5);
  buf.set(READING_TYPEHASH, 0);
  writeWord(buf, 32, reading.agreementId, UINT256_MAX);
  const machineId = hexToBytes(reading.machineId);
  if (machineId.length !== 32) throw new TypeError("machineId must be 32 bytes");
  buf.set(machineId, 64);
  writeWord(buf, 96, reading.cumulativeUnits, UINT256_MAX);
  writeWord(buf, 128, reading.timestamp, UINT64_MAX);
  return keccak256(buf);
}

const domainSeparatorCache = new Map<string, Uint8Array>();

export function domainSeparator(domain: ReadingDomain): Uint8Array {
  const key = `${domain.chainId}:${domain.verifyingContract.toLowerCase()}`;
  let separator = domainSeparatorCache.get(key);
  if (separator === undefined) {
    const buf = new Uint8Array(32 * 5);
    buf.set(EIP712_DOMAIN_TYPEHASH, 0);
    buf.set(keccak256(encoder.encode(DOMAIN_NAME)), 32);
    buf.set(keccak256(encoder.encode(DOMAIN_VERSION)), 64);
    writeWord(buf, 96, BigInt(domain.chainId), UINT256_MAX);
    const address = hexToBytes(domain.verifyingContract);
    if (address.length !== 20) throw new TypeError("verifyingContract must be 20 bytes");
    buf.set(address, 128 + 12);
    separator = keccak256(buf);
    domainSeparatorCache.set(key, separator);
  }
  return separator;
}

function toTypedDataDigest(domain: ReadingDomain, structHash: Uint8Array): Uint8Array {
  const buf = new Uint8Array(2 + 32 + 32);
  buf[0] = 0x19;
  buf[1] = 0x01;
  buf.set(domainSeparator(domain), 2);
  buf.set(structHash, 34);
  return keccak256(buf);
}

/** The EIP-712 digest of one reading: what a secp256k1 device key signs. */
export function readingDigest(domain: ReadingDomain, reading: Reading): Uint8Array {
  return toTypedDataDigest(domain, hashReading(reading));
}

/** The message a P-256 device key signs with ECDSA-SHA256: sha256 of it is what is checked. */
export function p256MessageHash(digest: Uint8Array): Uint8Array {
  return sha256(digest);
}

/** The EIP-712 digest of a batch: what oracle signers sign for oracle-attested machines. */
export function readingBatchDigest(
  domain: ReadingDomain,
  readings: readonly Reading[],
): Uint8Array {
  const hashes = new Uint8Array(32 * readings.length);
  readings.forEach((reading, i) => hashes.set(hashReading(reading), 32 * i));
  const buf = new Uint8Array(64);
  buf.set(READING_BATCH_TYPEHASH, 0);
  buf.set(keccak256(hashes), 32);
  return toTypedDataDigest(domain, keccak256(buf));
}
