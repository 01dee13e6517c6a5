/**
 * The oracle's key at rest: an encrypted key file in the Web3 Secret Storage format (version 3, scrypt
 * and AES-128-CTR, the format of geth, Clef and most wallets). The key is decrypted in memory at
 * start; neither the key nor the password is ever printed or logged.
 */
import {
  closeSync,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { Wallet } from "ethers";
import type { Address, Hex } from "viem";
import { generatePrivateKey } from "viem/accounts";
import { ConfigError } from "../shared/errors.ts";

export const PRIVATE_KEY_PATTERN = /^0x[0-9a-fA-F]{64}$/;

export class KeystoreError extends ConfigError {
  override name = "KeystoreError";
}

/** The password in a password file: its first line, without the line break. */
export function readPasswordFile(path: string): string {
  const password = readFileSync(path, "utf8").split(/\r?\n/)[0] ?? "";
  if (password === "") throw new KeystoreError(`The password file ${path} is empty`);
  return password;
}

/** A plain hex key file (as ORACLE_KEY_FILE holds it). */
export function readKeyFile(path: string): Hex {
  const key = readFileSync(path, "utf8").trim();
  if (!PRIVATE_KEY_PATTERN.test(key)) {
    throw new KeystoreError(`The key file ${path} does not hold a 32-byte hex key (0x…)`);
  }
  return key as Hex;
}

/** Decrypts a key file; a wrong password or a damaged file is reported as such. */
export function decryptKeystore(
  path: string,
  password: string,
): { address: Address; privateKey: Hex } {
  let json: string;
  try {
    json = readFileSync(path, "utf8");
  } catch (error) {
    throw new KeystoreError(`Cannot read the keystore ${path}`, {
      details: (error as NodeJS.ErrnoException).code ?? String(error),
    });
  }
  let declared: string | undefined;
  try {
    const parsed = JSON.parse(json) as { address?: unknown; version?: unknown };
    if (parsed.version !== 3) throw new Error("not version 3");
    declared = typeof parsed.address === "string" ? parsed.address : undefined;
  } catch {
    throw new KeystoreError(`${path} is not a Web3 Secret Storage (version 3) key file`);
  }
  let wallet: { address: string; privateKey: string };
  try {
    wallet = Wallet.fromEncryptedJsonSync(json, password);
  } catch (error) {
    const message = error instanceof Error ? error.message : "";
    if (message.startsWith("incorrect password")) {
      throw new KeystoreError(`Wrong password for the keystore ${path}`, {
        details: `The password does not decrypt the key${declared ? ` of 0x${declared.replace(/^0x/, "")}` : ""}; check ORACLE_KEYSTORE_PASSWORD or ORACLE_KEYSTORE_PASSWORD_FILE.`,
      });
    }
    // Never pass the library's message on: it may quote the file's fields.
    throw new KeystoreError(`The keystore ${path} cannot be decrypted`, {
      details: "The file is damaged or uses an unsupported cipher or key derivation.",
    });
  }
  return { address: wallet.address as Address, privateKey: wallet.privateKey as Hex };
}

export interface CreateKeystoreOptions {
  /** Where to write the key file; an existing file is never overwritten. */
  out: string;
  password: string;
  /** The key to encrypt; a fresh random key when absent. */
  privateKey?: Hex;
}

/** Encrypts a key (a fresh one unless given) into a new file readable by its owner only. */
export async function createKeystore(
  options: CreateKeystoreOptions,
): Promise<{ address: Address }> {
  if (options.password === "") throw new KeystoreError("The keystore password must not be empty");
  const privateKey = options.privateKey ?? generatePrivateKey();
  if (!PRIVATE_KEY_PATTERN.test(privateKey)) {
    throw new KeystoreError("The key to import is not a 32-byte hex key (0x…)");
  }
  const wallet = new Wallet(privateKey);
  assertAbsent(options.out);
  const json = await wallet.encrypt(options.password);
  writeNewFile(options.out, `${json}\n`);
  return { address: wallet.address as Address };
}

function assertAbsent(path: string): void {
  try {
    lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  throw new KeystoreError(`Refusing to overwrite ${path}: it already exists`);
}

/**
 * Writes the whole content under a temporary name, then links it to `path`, which fails if `path`
 * exists: the file appears complete or not at all, mode 0600, and nothing is ever overwritten.
 */
function writeNewFile(path: string, content: string): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    try {
      const buffer = Buffer.from(content);
      let offset = 0;
      while (offset < buffer.length) offset += writeSync(fd, buffer, offset);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") {
        throw new KeystoreError(`Refusing to overwrite ${path}: it already exists`);
      }
      throw error;
    }
  } finally {
    unlinkSync(tmp);
  }
}
