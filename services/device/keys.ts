/**
 * Device keys of either curve: secp256k1 (a file holding the 32-byte private key as hex) and
 * P-256 in PEM (PKCS#8 "PRIVATE KEY" as TPMs, secure elements and openssl export, or SEC1
 * "EC PRIVATE KEY"). Files are written atomically with owner-only permissions; a key is never
 * logged or printed, only its public part.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  openSync,
  renameSync,
  statSync,
  writeSync,
  readFileSync,
} from "node:fs";
import { dirname } from "node:path";
import type { Hex } from "viem";
import { PpuError } from "../shared/errors.ts";
import {
  SECP256K1_N,
  p256KeyFromPem,
  publicKeyOf,
  type DevicePublicKey,
  type DeviceSigningKey,
  type KeyType,
} from "../shared/signatures.ts";

export class DeviceKeyError extends PpuError {
  override name = "DeviceKeyError";
  constructor(message: string, details?: string) {
    super("DEVICE_KEY_INVALID", message, { details });
  }
}

/** Creates a fresh key of the given curve. */
export function generateDeviceKey(keyType: KeyType): DeviceSigningKey {
  if (keyType === "p256") {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    return { keyType: "p256", privateKey };
  }
  for (;;) {
    const bytes = randomBytes(32);
    const k = BigInt(`0x${bytes.toString("hex")}`);
    if (k > 0n && k < SECP256K1_N)
      return { keyType: "secp256k1", privateKey: `0x${bytes.toString("hex")}` };
  }
}

/** The file contents of a key: PKCS#8 PEM for P-256, 0x-hex plus newline for secp256k1. */
export function serializeDeviceKey(key: DeviceSigningKey): string {
  if (key.keyType === "p256")
    return key.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  return `${key.privateKey}\n`;
}

/** Parses key file contents, detecting the curve from the format. */
export function parseDeviceKey(text: string): DeviceSigningKey {
  const trimmed = text.trim();
  if (trimmed.startsWith("-----BEGIN")) {
    try {
      return { keyType: "p256", privateKey: p256KeyFromPem(trimmed) };
    } catch (error) {
      throw new DeviceKeyError(
        "key file is PEM but not a P-256 private key",
        (error as Error).message,
      );
    }
  }
  const hex = trimmed.startsWith("0x") ? trimmed.slice(2) : trimmed;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new DeviceKeyError(
      "key file is neither P-256 PEM nor a 32-byte secp256k1 hex private key",
    );
  }
  const k = BigInt(`0x${hex}`);
  if (k === 0n || k >= SECP256K1_N) throw new DeviceKeyError("secp256k1 private key out of range");
  return { keyType: "secp256k1", privateKey: `0x${hex.toLowerCase()}` };
}

/** Writes a file atomically (temp file, fsync, rename, fsync of the directory) with the given mode. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const fd = openSync(tmp, "wx", mode);
  try {
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  try {
    const dirFd = openSync(dirname(path), "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch {
    // Some platforms cannot fsync a directory; the rename itself is still atomic.
  }
}

/** Stores a key with mode 0600; refuses to overwrite an existing file unless told. */
export function saveDeviceKey(
  path: string,
  key: DeviceSigningKey,
  options: { overwrite?: boolean } = {},
): void {
  if (!options.overwrite) {
    let exists = true;
    try {
      statSync(path);
    } catch {
      exists = false;
    }
    if (exists) throw new DeviceKeyError(`refusing to overwrite existing key file ${path}`);
  }
  writeFileAtomic(path, serializeDeviceKey(key), 0o600);
}

/**
 * Loads a key file. A file readable or writable by group or others is refused (a leaked device
 * key lets anyone bill against the lessee's escrow) unless `allowInsecurePermissions` is set.
 */
export function loadDeviceKey(
  path: string,
  options: { allowInsecurePermissions?: boolean } = {},
): DeviceSigningKey {
  const stat = statSync(path);
  if (
    process.platform !== "win32" &&
    (stat.mode & 0o077) !== 0 &&
    !options.allowInsecurePermissions
  ) {
    throw new DeviceKeyError(
      `key file ${path} is accessible by group or others (mode ${(stat.mode & 0o777).toString(8)})`,
      "run: chmod 600 on the file",
    );
  }
  return parseDeviceKey(readFileSync(path, "utf8"));
}

/** What an owner needs to register the machine: the on-chain DeviceKey tuple. */
export interface RegistrationData {
  machineId: Hex;
  keyType: KeyType;
  /** keyType code on-chain: 1 = secp256k1, 2 = P-256. */
  keyTypeCode: 1 | 2;
  publicKey: DevicePublicKey;
  /** DeviceKey.x: the address (left-padded) for secp256k1, the x coordinate for P-256. */
  x: Hex;
  /** DeviceKey.y: zero for secp256k1, the y coordinate for P-256. */
  y: Hex;
}

const ZERO32: Hex = `0x${"00".repeat(32)}`;

export function registrationData(key: DeviceSigningKey, machineId: Hex): RegistrationData {
  const publicKey = publicKeyOf(key);
  if (publicKey.keyType === "secp256k1") {
    return {
      machineId,
      keyType: "secp256k1",
      keyTypeCode: 1,
      publicKey,
      x: `0x${publicKey.address.slice(2).toLowerCase().padStart(64, "0")}`,
      y: ZERO32,
    };
  }
  return { machineId, keyType: "p256", keyTypeCode: 2, publicKey, x: publicKey.x, y: publicKey.y };
}
