/**
 * Who is calling, and what they may see.
 *
 * - Owners and lessees sign in with their wallet (Sign-In with Ethereum, EIP-4361) and get a session
 *   token; they see the machines they own and the agreements they hold or that run on their machines.
 * - An owner grants an insurer or a bank read access to chosen machines by signing an EIP-712
 *   `AccessGrant`; grants count while the signer still owns the machine and until they expire.
 * - Insurers and banks call with an API key issued by the operator for their address; a key sees the
 *   machines granted to that address. Only keys with the bank role reach the SEPA operations.
 */
import { createHash, randomBytes } from "node:crypto";
import { getAddress, recoverTypedDataAddress, verifyMessage, type Address, type Hex } from "viem";
import { generateSiweNonce, parseSiweMessage, validateSiweMessage } from "viem/siwe";
import type { Database } from "../shared/db.ts";
import { ForbiddenError, UnauthorizedError, ValidationError } from "../shared/errors.ts";

export const AUTH_MIGRATIONS = [
  `CREATE TABLE IF NOT EXISTS api_nonces (nonce TEXT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
  `CREATE TABLE IF NOT EXISTS api_sessions (
     token_hash TEXT PRIMARY KEY, address TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS api_keys (
     key_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, party TEXT NOT NULL, role TEXT NOT NULL,
     address TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now(), revoked_at TIMESTAMPTZ)`,
  `CREATE TABLE IF NOT EXISTS api_grants (
     id SERIAL PRIMARY KEY, owner TEXT NOT NULL, grantee TEXT NOT NULL, machine_ids JSONB NOT NULL,
     expires_at BIGINT NOT NULL, nonce NUMERIC(78) NOT NULL, signature TEXT NOT NULL UNIQUE,
     created_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
  `CREATE TABLE IF NOT EXISTS api_grant_machines (
     grant_id INTEGER NOT NULL REFERENCES api_grants(id), machine_id TEXT NOT NULL, grantee TEXT NOT NULL,
     owner TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (grant_id, machine_id))`,
  `CREATE INDEX IF NOT EXISTS api_grant_machines_grantee ON api_grant_machines (grantee)`,
];

export type Role = "owner" | "lessee" | "insurer" | "bank";

export type Principal =
  | { kind: "anonymous"; id: string }
  | { kind: "wallet"; id: string; address: Address }
  | { kind: "key"; id: string; role: "insurer" | "bank"; address: Address; party: string }
  | { kind: "admin"; id: string };

export const GRANT_TYPES = {
  AccessGrant: [
    { name: "grantee", type: "address" },
    { name: "machineIds", type: "bytes32[]" },
    { name: "expiresAt", type: "uint64" },
    { name: "nonce", type: "uint256" },
  ],
} as const;

export function grantDomain(chainId: number) {
  return { name: "PayPerUse access", version: "1", chainId } as const;
}

export interface AccessGrant {
  grantee: Address;
  machineIds: Hex[];
  expiresAt: bigint;
  nonce: bigint;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const SESSION_SECONDS = 24 * 3600;

export class Auth {
  constructor(
    private readonly db: Database,
    private readonly options: { domain: string; chainId: number; adminToken?: string },
  ) {}

  static async open(
    db: Database,
    options: { domain: string; chainId: number; adminToken?: string },
  ) {
    await db.migrate("api-auth", AUTH_MIGRATIONS);
    return new Auth(db, options);
  }

  /** Who sent a request: `Authorization: Bearer <session | API key | admin token>`, else anonymous. */
  async principal(authorization: string | undefined, ip: string): Promise<Principal> {
    if (!authorization) return { kind: "anonymous", id: `ip:${ip}` };
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match) throw new UnauthorizedError("Authorization must be 'Bearer <token>'");
    const token = match[1]!;
    if (this.options.adminToken && token === this.options.adminToken)
      return { kind: "admin", id: "admin" };
    if (token.startsWith("ppu_key_")) {
      const { rows } = await this.db.query<{
        key_id: string;
        role: "insurer" | "bank";
        address: string;
        party: string;
      }>(
        "SELECT key_id, role, address, party FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        [sha256(token)],
      );
      const key = rows[0];
      if (!key) throw new UnauthorizedError("unknown or revoked API key");
      return {
        kind: "key",
        id: `key:${key.key_id}`,
        role: key.role,
        address: getAddress(key.address),
        party: key.party,
      };
    }
    const { rows } = await this.db.query<{ address: string }>(
      "SELECT address FROM api_sessions WHERE token_hash = $1 AND expires_at > now()",
      [sha256(token)],
    );
    if (!rows[0]) throw new UnauthorizedError("unknown or expired session; sign in again");
    const address = getAddress(rows[0].address);
    return { kind: "wallet", id: `wallet:${address}`, address };
  }

  async nonce(): Promise<string> {
    const nonce = generateSiweNonce();
    await this.db.query("INSERT INTO api_nonces (nonce) VALUES ($1)", [nonce]);
    await this.db.query("DELETE FROM api_nonces WHERE created_at < now() - interval '1 hour'");
    return nonce;
  }

  /** Verifies a signed EIP-4361 message and opens a session; each nonce works once. */
  async signIn(
    message: string,
    signature: Hex,
  ): Promise<{ token: string; address: Address; expiresAt: string }> {
    let parsed;
    try {
      parsed = parseSiweMessage(message);
    } catch {
      throw new ValidationError("not a Sign-In with Ethereum (EIP-4361) message");
    }
    if (!parsed.address || !parsed.nonce)
      throw new ValidationError("the sign-in message has no address or nonce");
    if (!validateSiweMessage({ message: parsed, domain: this.options.domain, time: new Date() })) {
      throw new UnauthorizedError(
        `the sign-in message is expired or not for ${this.options.domain}`,
      );
    }
    if (parsed.chainId !== undefined && parsed.chainId !== this.options.chainId) {
      throw new UnauthorizedError(
        `the sign-in message is for chain ${parsed.chainId}, not ${this.options.chainId}`,
      );
    }
    const valid = await verifyMessage({ address: parsed.address, message, signature }).catch(
      () => false,
    );
    if (!valid) throw new UnauthorizedError("the signature does not match the message's address");
    const { rows } = await this.db.query<{ nonce: string }>(
      "DELETE FROM api_nonces WHERE nonce = $1 RETURNING nonce",
      [parsed.nonce],
    );
    if (rows.length === 0)
      throw new UnauthorizedError("unknown or already used nonce; ask for a new one");
    const token = randomBytes(32).toString("base64url");
    const expiresAt = new Date(Date.now() + SESSION_SECONDS * 1000);
    await this.db.query(
      "INSERT INTO api_sessions (token_hash, address, expires_at) VALUES ($1, $2, $3)",
      [sha256(token), parsed.address.toLowerCase(), expiresAt.toISOString()],
    );
    return { token, address: getAddress(parsed.address), expiresAt: expiresAt.toISOString() };
  }

  /** Issues an API key (shown once) for an insurer or a bank. */
  async createKey(
    party: string,
    role: "insurer" | "bank",
    address: Address,
  ): Promise<{ key: string; keyId: string }> {
    const keyId = randomBytes(6).toString("hex");
    const key = `ppu_key_${keyId}_${randomBytes(24).toString("base64url")}`;
    await this.db.query(
      "INSERT INTO api_keys (key_hash, key_id, party, role, address) VALUES ($1, $2, $3, $4, $5)",
      [sha256(key), keyId, party, role, address.toLowerCase()],
    );
    return { key, keyId };
  }

  async revokeKey(keyId: string): Promise<boolean> {
    const { rows } = await this.db.query(
      "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING key_id",
      [keyId],
    );
    return rows.length > 0;
  }

  /**
   * Stores an owner-signed grant after checking that its signer owns every machine it names (per
   * the index) and that it has not expired.
   */
  async addGrant(
    grant: AccessGrant,
    signature: Hex,
    ownerOf: (machineId: string) => Promise<string | undefined>,
    submitter?: Address,
  ): Promise<{ id: number; owner: Address }> {
    if (grant.machineIds.length === 0)
      throw new ValidationError("a grant names at least one machine");
    if (grant.expiresAt <= BigInt(Math.floor(Date.now() / 1000)))
      throw new ValidationError("the grant has expired");
    let owner: Address;
    try {
      owner = await recoverTypedDataAddress({
        domain: grantDomain(this.options.chainId),
        types: GRANT_TYPES,
        primaryType: "AccessGrant",
        message: grant,
        signature,
      });
    } catch {
      throw new ValidationError("the grant's signature cannot be read");
    }
    if (submitter && submitter.toLowerCase() !== owner.toLowerCase()) {
      throw new ForbiddenError(`the grant is signed by ${owner}; submit your own grants`);
    }
    for (const machineId of grant.machineIds) {
      const current = await ownerOf(machineId.toLowerCase());
      if (current === undefined) throw new ValidationError(`unknown machine ${machineId}`);
      if (current !== owner.toLowerCase()) {
        throw new ForbiddenError(
          `the grant is signed by ${owner}, who does not own machine ${machineId}`,
        );
      }
    }
    const { rows } = await this.db.query<{ id: number }>(
      `INSERT INTO api_grants (owner, grantee, machine_ids, expires_at, nonce, signature)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (signature) DO NOTHING RETURNING id`,
      [
        owner.toLowerCase(),
        grant.grantee.toLowerCase(),
        JSON.stringify(grant.machineIds.map((m) => m.toLowerCase())),
        String(grant.expiresAt),
        String(grant.nonce),
        signature,
      ],
    );
    if (!rows[0]) throw new ValidationError("this grant was already submitted");
    for (const machineId of grant.machineIds) {
      await this.db.query(
        "INSERT INTO api_grant_machines (grant_id, machine_id, grantee, owner, expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        [
          rows[0].id,
          machineId.toLowerCase(),
          grant.grantee.toLowerCase(),
          owner.toLowerCase(),
          String(grant.expiresAt),
        ],
      );
    }
    return { id: rows[0].id, owner };
  }
}
