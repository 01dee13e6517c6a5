/**
 * Gas of the money paths, measured on the in-process Hardhat network (hardfork osaka).
 *
 *   npm run bench:gas            # prints the table, writes reports/gas.json, compares with snapshots/gas.json
 *   npm run bench:gas:update     # also rewrites the committed snapshot
 *
 * Batches use distinct agreements on distinct machines (the worst case: nothing is warm).
 */
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { network } from "hardhat";
import type { Hex } from "viem";
import { readingBatchDigest, type Reading } from "../../services/shared/eip712.ts";
import {
  publicKeyOf,
  signDigestSecp256k1,
  signReading,
  type DeviceSigningKey,
} from "../../services/shared/signatures.ts";

const update = process.env.UPDATE_GAS_SNAPSHOT === "1";
const { ethers } = await network.create();
const [admin, bank, owner, lessee] = await ethers.getSigners();
const oracleKey = ethers.id("bench-oracle") as Hex;
const oracleAddress = ethers.computeAddress(oracleKey);

const ppu = await ethers.deployContract("PayPerUse", [
  admin.address,
  bank.address,
  [oracleAddress],
  1,
  172_800n,
]);
const eurc = await ethers.deployContract("MockEURC", [admin.address]);
const ppuAddress = (await ppu.getAddress()) as Hex;
const tokenAddress = await eurc.getAddress();
const { chainId } = await ethers.provider.getNetwork();
const domain = { chainId, verifyingContract: ppuAddress };
await eurc.getFunction("mint")(lessee.address, 10n ** 15n);
await eurc.getFunction("mint")(bank.address, 10n ** 15n);
await eurc.connect(lessee).getFunction("approve")(ppuAddress, ethers.MaxUint256);

const ZERO = ethers.ZeroHash;
let machineCounter = 0;

function deviceKeyOf(key: DeviceSigningKey | undefined) {
  if (!key) return { keyType: 0, x: ZERO, y: ZERO };
  const pub = publicKeyOf(key);
  return pub.keyType === "secp256k1"
    ? { keyType: 1, x: ethers.zeroPadValue(pub.address, 32), y: ZERO }
    : { keyType: 2, x: pub.x, y: pub.y };
}

async function now(): Promise<bigint> {
  return BigInt((await ethers.provider.getBlock("latest"))!.timestamp);
}

interface Setup {
  id: bigint;
  machineId: Hex;
  key?: DeviceSigningKey;
}

async function newAgreement(mode: "device-k1" | "device-p256" | "oracle"): Promise<Setup> {
  const machineId = ethers.id(`bench-machine-${machineCounter++}`) as Hex;
  const key: DeviceSigningKey | undefined =
    mode === "device-k1"
      ? { keyType: "secp256k1", privateKey: ethers.id(`key-${machineId}`) as Hex }
      : mode === "device-p256"
        ? {
            keyType: "p256",
            privateKey: generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey,
          }
        : undefined;
  await ppu.connect(owner).getFunction("registerMachine")(
    machineId,
    owner.address,
    mode === "oracle" ? 1 : 0,
    0n,
    deviceKeyOf(key),
  );
  await ppu.connect(owner).getFunction("publishTariff")(machineId, {
    token: tokenAddress,
    unit: "kWh",
    price: 250_000n,
    unitScale: 1_000n,
    tiers: [],
    minimumCharge: 0n,
    baseFee: 0n,
    period: 0n,
  });
  await ppu.connect(lessee).getFunction("openAgreement")({
    machineId,
    tariffVersion: 1,
    deposit: 1_000_000_000n,
    endTime: (await now()) + 365n * 86_400n,
    spendingCap: 0n,
    capPeriod: 0n,
    lowBalanceThreshold: 1_000_000n,
    disputeWindow: 86_400n,
    mandateRef: ethers.id("bench-mandate"),
  });
  const id = (await ppu.agreementCount()) as bigint;
  return { id, machineId, key };
}

async function gasOf(
  tx: Promise<{ wait(): Promise<{ gasUsed: bigint } | null> }>,
): Promise<number> {
  const receipt = await (await tx).wait();
  return Number(receipt!.gasUsed);
}

const meter = new Map<bigint, bigint>();
async function nextReading(s: Setup, step = 1_000n): Promise<Reading> {
  const units = (meter.get(s.id) ?? 0n) + step;
  meter.set(s.id, units);
  return {
    agreementId: s.id,
    machineId: s.machineId,
    cumulativeUnits: units,
    timestamp: await now(),
  };
}

async function recordDevice(setups: Setup[], step = 1_000n): Promise<number> {
  const batch = [];
  for (const s of setups) {
    const r = await nextReading(s, step);
    batch.push({ reading: r, signature: signReading(domain, r, s.key!) });
  }
  return gasOf(ppu.getFunction("record")(batch));
}

async function recordOracle(setups: Setup[]): Promise<number> {
  const readings = [];
  for (const s of setups) readings.push(await nextReading(s));
  const signature = signDigestSecp256k1(readingBatchDigest(domain, readings), oracleKey);
  return gasOf(ppu.getFunction("recordAttested")(readings, [signature]));
}

async function warmed(mode: "device-k1" | "device-p256" | "oracle", n: number): Promise<Setup[]> {
  const setups: Setup[] = [];
  for (let i = 0; i < n; i++) setups.push(await newAgreement(mode));
  // First readings take the meters off zero; the measured readings are the steady state.
  if (mode === "oracle") await recordOracle(setups);
  else await recordDevice(setups);
  return setups;
}

process.stdout.write("measuring gas on the in-process Hardhat network (osaka)…\n");
const single = await warmed("device-k1", 1);
const singleDeviceSigned = await recordDevice(single);
const singleP256 = await recordDevice(await warmed("device-p256", 1));

const perReading = {
  deviceSigned: {} as Record<string, number>,
  oracleAttested: {} as Record<string, number>,
};
for (const n of [1, 10, 100]) {
  perReading.deviceSigned[n] = Math.round((await recordDevice(await warmed("device-k1", n))) / n);
  perReading.oracleAttested[n] = Math.round((await recordOracle(await warmed("oracle", n))) / n);
  process.stdout.write(`  batches of ${n} done\n`);
}

// Offline: a machine that took 10,000 readings while offline submits only the newest (cumulative) one.
const offlineOne = await warmed("device-k1", 1);
const newestOf1 = await recordDevice(offlineOne, 1n);
const offlineMany = await warmed("device-k1", 1);
// 10,000 offline readings of 1 Wh each: the newest one carries all of them, and it alone is submitted.
const newestOf10000 = await recordDevice(offlineMany, 10_000n);

// Money paths.
const openSetup = await newAgreement("device-k1");
const open = await gasOf(
  ppu.connect(lessee).getFunction("openAgreement")({
    machineId: openSetup.machineId,
    tariffVersion: 1,
    deposit: 1_000_000_000n,
    endTime: (await now()) + 365n * 86_400n,
    spendingCap: 0n,
    capPeriod: 0n,
    lowBalanceThreshold: 1_000_000n,
    disputeWindow: 86_400n,
    mandateRef: ethers.id("bench-mandate"),
  }),
);
const topUp = await gasOf(ppu.connect(lessee).getFunction("topUp")(openSetup.id, 5_000_000n));
await recordDevice([openSetup]);
const settle = await gasOf(ppu.getFunction("settle")([openSetup.id]));
// A credited balance to withdraw: a returned-after-collection debit credits the bank what the agreement holds.
const debtor = await warmed("device-k1", 1);
await recordDevice(debtor);
meter.set(debtor[0]!.id, (meter.get(debtor[0]!.id) ?? 0n) + 10_000_000n);
await recordDevice(debtor);
await ppu.getFunction("settle")([debtor[0]!.id]);
const debitId = 1n;
await eurc.connect(bank).getFunction("approve")(ppuAddress, ethers.MaxUint256);
await ppu.connect(bank).getFunction("confirmDirectDebit")(debitId);
await ppu.connect(bank).getFunction("reportDirectDebitReturn")(debitId, "0x4d443036");
const withdraw = await gasOf(ppu.connect(bank).getFunction("withdraw")(tokenAddress));

const report = {
  singleDeviceSigned,
  perReading,
  offline: { newestOf1, newestOf10000 },
  open,
  topUp,
  settle,
  withdraw,
  singleDeviceSignedP256: singleP256,
};

const targets: Record<string, number> = {
  singleDeviceSigned: 50_000,
  "perReading.deviceSigned.100": 15_000,
  "perReading.oracleAttested.100": 10_000,
};

function flatten(value: unknown, prefix = ""): [string, number][] {
  if (typeof value === "number") return [[prefix, value]];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) =>
    flatten(v, prefix ? `${prefix}.${k}` : k),
  );
}

const snapshotPath = "snapshots/gas.json";
const snapshot = existsSync(snapshotPath)
  ? new Map(flatten(JSON.parse(readFileSync(snapshotPath, "utf8"))))
  : new Map<string, number>();
const rows = flatten(report).map(([name, gas]) => {
  const before = snapshot.get(name);
  const diff =
    before === undefined
      ? "new"
      : gas === before
        ? "="
        : `${gas > before ? "+" : ""}${gas - before}`;
  const target = targets[name];
  const verdict =
    target === undefined ? "" : gas <= target ? `<= ${target} ok` : `> ${target} MISSED`;
  return [name, gas.toLocaleString("en-US"), diff, verdict];
});
rows.push([
  "offline: newestOf10000 - newestOf1",
  (newestOf10000 - newestOf1).toLocaleString("en-US"),
  "",
  "same cost: only the newest reading is submitted",
]);
const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), 10));
console.log(
  `\n${"operation".padEnd(widths[0]!)}  ${"gas".padStart(widths[1]!)}  ${"vs snapshot".padEnd(widths[2]!)}  target`,
);
for (const r of rows) {
  console.log(
    `${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padStart(widths[1]!)}  ${r[2]!.padEnd(widths[2]!)}  ${r[3]}`,
  );
}
mkdirSync("reports", { recursive: true });
writeFileSync("reports/gas.json", `${JSON.stringify(report, null, 2)}\n`);
console.log("\nwrote reports/gas.json");
if (update || !existsSync(snapshotPath)) {
  writeFileSync(snapshotPath, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${snapshotPath}`);
}
