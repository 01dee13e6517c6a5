/**
 * Shared fixtures for the contract tests: one PayPerUse deployment with the four kinds of token
 * the platform must handle, machines of both key types and both trust modes, tariffs, and
 * helpers that sign readings with the shared signing code (the same code the device SDK and the
 * oracle use) and build oracle-attested batches.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { network } from "hardhat";
import type { HardhatEthers, HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/types";
import type { Contract } from "ethers";
import {
  bytesToHex,
  readingBatchDigest,
  readingDigest,
  type Reading,
  type ReadingDomain,
} from "../../services/shared/eip712.ts";
import {
  publicKeyOf,
  signDigestSecp256k1,
  signReading,
  type DeviceSigningKey,
} from "../../services/shared/signatures.ts";
import type { Hex } from "viem";

export const connection = await network.getOrCreate();
export const { ethers, networkHelpers } = connection;

/** Solidity enums, by name. */
export const TrustMode = { DeviceSigned: 0, OracleAttested: 1 } as const;
export const KeyType = { None: 0, Secp256k1: 1, P256: 2 } as const;
export const AgreementStatus = { None: 0, Active: 1, Suspended: 2, Closed: 3 } as const;
export const DebitStatus = { None: 0, Requested: 1, Collected: 2, Returned: 3 } as const;
export const SkipReason = {
  UnknownAgreement: 0,
  MachineMismatch: 1,
  WrongTrustMode: 2,
  AgreementNotActive: 3,
  NoDeviceKey: 4,
  BadSignature: 5,
  StaleReading: 6,
  BeforeStart: 7,
  AfterEnd: 8,
  TooLate: 9,
  FutureTimestamp: 10,
} as const;

export const DAY = 86_400n;
export const HOUR = 3_600n;
export const DEBIT_LEAD_TIME = 2n * DAY;
/** 1 EURC in token smallest units (6 decimals). */
export const ONE = 1_000_000n;
/** Default tariff: 0.25 token per kWh, metered in Wh (unit scale 1000): 250 smallest units per Wh. */
export const PRICE = 250_000n;
export const UNIT_SCALE = 1_000n;

/** ISO 20022 return reason codes as bytes4 ASCII. */
export function reasonCode(code: string): Hex {
  return bytesToHex(Buffer.from(code, "ascii"));
}

export function machineIdOf(name: string): Hex {
  return ethers.id(name) as Hex;
}

/** Fixed secp256k1 device and oracle keys, so addresses (and their order) are stable across runs. */
export function secpKey(seed: string): DeviceSigningKey & { keyType: "secp256k1" } {
  return { keyType: "secp256k1", privateKey: ethers.id(seed) as Hex };
}

/** A fresh P-256 key made by Node's crypto, as a TPM or secure element would hold it. */
export function p256Key(): DeviceSigningKey & { keyType: "p256"; privateKey: KeyObject } {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { keyType: "p256", privateKey };
}

/** The on-chain DeviceKey struct for a signing key (or no key). */
export function deviceKeyOf(key?: DeviceSigningKey): { keyType: number; x: Hex; y: Hex } {
  const zero = ethers.ZeroHash as Hex;
  if (key === undefined) return { keyType: KeyType.None, x: zero, y: zero };
  const publicKey = publicKeyOf(key);
  if (publicKey.keyType === "secp256k1") {
    return {
      keyType: KeyType.Secp256k1,
      x: ethers.zeroPadValue(publicKey.address, 32) as Hex,
      y: zero,
    };
  }
  return { keyType: KeyType.P256, x: publicKey.x, y: publicKey.y };
}

export interface TariffInput {
  token: string;
  unit?: string;
  price?: bigint;
  unitScale?: bigint;
  tiers?: { fromUnits: bigint; price: bigint }[];
  minimumCharge?: bigint;
  baseFee?: bigint;
  period?: bigint;
}

export function tariff(input: TariffInput) {
  return {
    token: input.token,
    unit: input.unit ?? "kWh",
    price: input.price ?? PRICE,
    unitScale: input.unitScale ?? UNIT_SCALE,
    tiers: input.tiers ?? [],
    minimumCharge: input.minimumCharge ?? 0n,
    baseFee: input.baseFee ?? 0n,
    period: input.period ?? 0n,
  };
}

export interface OpenInput {
  machineId: Hex;
  tariffVersion?: number;
  deposit?: bigint;
  endTime?: bigint;
  spendingCap?: bigint;
  capPeriod?: bigint;
  lowBalanceThreshold?: bigint;
  disputeWindow?: bigint;
  mandateRef?: Hex;
}

/** The latest block's timestamp on the given network (the default one unless told). */
export async function now(on: HardhatEthers = ethers): Promise<bigint> {
  const block = await on.provider.getBlock("latest");
  return BigInt(block!.timestamp);
}

export async function openParams(input: OpenInput, on: HardhatEthers = ethers) {
  return {
    machineId: input.machineId,
    tariffVersion: input.tariffVersion ?? 1,
    deposit: input.deposit ?? 100n * ONE,
    endTime: input.endTime ?? (await now(on)) + 30n * DAY,
    spendingCap: input.spendingCap ?? 0n,
    capPeriod: input.capPeriod ?? 0n,
    lowBalanceThreshold: input.lowBalanceThreshold ?? 0n,
    disputeWindow: input.disputeWindow ?? 7n * DAY,
    mandateRef: input.mandateRef ?? (ethers.ZeroHash as Hex),
  };
}

/** ERC-2612 permit signed by `owner` for `spender`. */
export async function signPermit(
  token: Contract,
  owner: HardhatEthersSigner,
  spender: string,
  value: bigint,
  deadline?: bigint,
) {
  const { chainId } = await ethers.provider.getNetwork();
  const expiry = deadline ?? (await now()) + HOUR;
  const signature = await owner.signTypedData(
    {
      name: await token.name(),
      version: "1",
      chainId,
      verifyingContract: await token.getAddress(),
    },
    {
      Permit: [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" },
      ],
    },
    {
      owner: owner.address,
      spender,
      value,
      nonce: await token.nonces(owner.address),
      deadline: expiry,
    },
  );
  const { v, r, s } = ethers.Signature.from(signature);
  return { value, deadline: expiry, v, r, s };
}

/** Deploys the suite on a network (the default one unless told). */
export async function deployOn(on: HardhatEthers) {
  const ethers = on;
  const [admin, bank, owner, owner2, payout, lessee, lessee2, stranger] = await ethers.getSigners();
  const oracleKeys = ["oracle-a", "oracle-b", "oracle-c"].map((seed) => secpKey(seed));
  const oracleAddresses = oracleKeys.map((key) => ethers.computeAddress(key.privateKey));

  const ppu = await ethers.deployContract("PayPerUse", [
    admin.address,
    bank.address,
    oracleAddresses,
    2,
    DEBIT_LEAD_TIME,
  ]);
  const ppuAddress = (await ppu.getAddress()) as Hex;
  const { chainId } = await ethers.provider.getNetwork();
  const domain: ReadingDomain = { chainId, verifyingContract: ppuAddress };

  const eurc = await ethers.deployContract("MockEURC", [admin.address]);
  const usdt = await ethers.deployContract("MockUSDT", [admin.address]);
  const feeToken = await ethers.deployContract("MockFeeToken", [admin.address, 100n]);
  const blocklist = await ethers.deployContract("MockBlocklistToken", [admin.address]);
  for (const token of [eurc, usdt, feeToken, blocklist]) {
    for (const account of [lessee, lessee2, bank, stranger]) {
      await token.connect(admin).getFunction("mint")(account.address, 1_000_000n * ONE);
    }
  }

  // Machines: one per key type and trust mode, all owned by `owner` and paying to `payout`.
  const k1Key = secpKey("device-k1");
  const p256 = p256Key();
  const k1Machine = machineIdOf("press-k1");
  const p256Machine = machineIdOf("press-p256");
  const oracleMachine = machineIdOf("press-oracle");
  await ppu.connect(owner).getFunction("registerMachine")(
    k1Machine,
    payout.address,
    TrustMode.DeviceSigned,
    0n,
    deviceKeyOf(k1Key),
  );
  await ppu.connect(owner).getFunction("registerMachine")(
    p256Machine,
    payout.address,
    TrustMode.DeviceSigned,
    0n,
    deviceKeyOf(p256),
  );
  await ppu.connect(owner).getFunction("registerMachine")(
    oracleMachine,
    payout.address,
    TrustMode.OracleAttested,
    0n,
    deviceKeyOf(),
  );
  const eurcAddress = await eurc.getAddress();
  for (const id of [k1Machine, p256Machine, oracleMachine]) {
    await ppu.connect(owner).getFunction("publishTariff")(id, tariff({ token: eurcAddress }));
  }

  return {
    ethers: on,
    ppu,
    ppuAddress,
    domain,
    eurc,
    usdt,
    feeToken,
    blocklist,
    admin,
    bank,
    owner,
    owner2,
    payout,
    lessee,
    lessee2,
    stranger,
    oracleKeys,
    oracleAddresses,
    k1Key,
    p256Key: p256,
    k1Machine,
    p256Machine,
    oracleMachine,
  };
}

export function deployFixture() {
  return deployOn(ethers);
}

export type Fixture = Awaited<ReturnType<typeof deployOn>>;

export async function loadDeployment(): Promise<Fixture> {
  return networkHelpers.loadFixture(deployFixture);
}

/** Approves and opens an agreement; returns its id. */
export async function openAgreement(
  f: Fixture,
  input: OpenInput,
  lessee: HardhatEthersSigner = f.lessee,
  token: Contract = f.eurc,
): Promise<bigint> {
  const params = await openParams(input, f.ethers);
  await token.connect(lessee).getFunction("approve")(f.ppuAddress, params.deposit);
  const tx = await f.ppu.connect(lessee).getFunction("openAgreement")(params);
  await tx.wait();
  return (await f.ppu.agreementCount()) as bigint;
}

export function reading(
  agreementId: bigint,
  machineId: Hex,
  cumulativeUnits: bigint,
  timestamp: bigint,
): Reading {
  return { agreementId, machineId, cumulativeUnits, timestamp };
}

/** A device-signed reading as `record` takes it. */
export function signed(f: Fixture, r: Reading, key: DeviceSigningKey) {
  return { reading: r, signature: signReading(f.domain, r, key) };
}

/** k oracle signatures over a batch, ordered by ascending signer address as the contract requires. */
export function attest(f: Fixture, readings: Reading[], keys = f.oracleKeys.slice(0, 2)): Hex[] {
  const digest = readingBatchDigest(f.domain, readings);
  return keys
    .map((key) => ({ address: BigInt(ethers.computeAddress(key.privateKey)), key }))
    .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
    .map(({ key }) => signDigestSecp256k1(digest, key.privateKey));
}

export function digestOf(f: Fixture, r: Reading): Hex {
  return bytesToHex(readingDigest(f.domain, r));
}

export type { HardhatEthers, HardhatEthersSigner };
