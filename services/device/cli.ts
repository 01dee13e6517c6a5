/** `ppu device …` commands: create and inspect device keys, simulate a fleet against the chain. */
import { InvalidArgumentError, type Command } from "commander";
import { getAddress, isHex, type Address, type Hex } from "viem";
import { generateDeviceKey, loadDeviceKey, registrationData, saveDeviceKey } from "./keys.ts";
import type { OfflinePeriod } from "./simulate.ts";

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("expected a positive number");
  return n;
}

function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError("expected a number ≥ 0");
  return n;
}

function fraction(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1)
    throw new InvalidArgumentError("expected a number from 0 to 1");
  return n;
}

function hexKey(value: string): Hex {
  if (!isHex(value) || value.length !== 66)
    throw new InvalidArgumentError("expected a 32-byte hex key (0x…)");
  return value;
}

function address(value: string): Address {
  try {
    return getAddress(value);
  } catch {
    throw new InvalidArgumentError("expected an address (0x + 40 hex digits)");
  }
}

const SIMULATE_HELP = `
Every machine is a DeviceClient of the machine SDK with its own MQTT connection: it meters at its
own rate (random around --rate), goes offline for a period (random, or scripted with --offline),
keeps counting while offline, and publishes its newest signed cumulative reading when back. After
--seconds of metering the simulator waits until every machine is told its usage is settled, then
reads each agreement on the chain and compares. Progress goes to stderr, the summary to stdout.

Exit status: 0 when the chain charged exactly what every machine measured, 1 otherwise.

Examples:
  # the whole system in this process: chain, contracts, oracle with its embedded broker
  $ ppu device simulate --embedded --machines 20 --seconds 30

  # 1,000 machines for a minute
  $ ppu device simulate --embedded --machines 1000 --seconds 60

  # reproducible: a quarter of the machines offline for 20 s each, random rates from seed 7
  $ ppu device simulate --embedded --machines 100 --seconds 60 --offline-fraction 0.25 \\
      --offline-seconds 20 --seed 7

  # scripted: every machine uses exactly 20 units/s; machine 0 is offline from 5 s to 25 s and
  # machine 3 from 10 s to 40 s; meters in files, so machines restart from them after an outage
  $ ppu device simulate --embedded --machines 4 --seconds 45 --rate 20 --rate-spread 0 \\
      --offline 0:5-25 --offline 3:10-40 --buffer-dir /tmp/ppu-fleet

  # against a running system whose oracle serves this contract on this broker
  $ ppu device simulate --rpc http://127.0.0.1:8545 --contract 0x… --token 0x… \\
      --broker mqtt://127.0.0.1:1883 --owner-key 0x… --lessee-key 0x… --machines 50 --seconds 120
`;

export function registerDeviceCommands(program: Command): void {
  const device = program
    .command("device")
    .description("machine side: device keys and a fleet simulator");
  device
    .command("keygen")
    .description("create a device key in a new owner-only (0600) file")
    .requiredOption("--curve <curve>", "p256 (PKCS#8 PEM) or secp256k1 (hex)")
    .requiredOption("--out <file>", "key file to create (never overwritten)")
    .addHelpText("after", "\nExample:\n  $ ppu device keygen --curve p256 --out machine-1.pem")
    .action((options: { curve: string; out: string }) => {
      if (options.curve !== "p256" && options.curve !== "secp256k1") {
        throw new Error(`--curve must be p256 or secp256k1, not ${options.curve}`);
      }
      const key = generateDeviceKey(options.curve);
      saveDeviceKey(options.out, key);
      console.log(`wrote ${options.out} (${options.curve}, mode 0600)`);
    });
  device
    .command("info")
    .description("print the public key and the registration data (DeviceKey tuple) of a key file")
    .requiredOption("--key <file>", "key file (P-256 PEM or secp256k1 hex)")
    .option("--machine-id <bytes32>", "machine id to include", `0x${"00".repeat(32)}`)
    .addHelpText("after", "\nExample:\n  $ ppu device info --key machine-1.pem --machine-id 0x…")
    .action((options: { key: string; machineId: string }) => {
      const data = registrationData(loadDeviceKey(options.key), options.machineId as Hex);
      console.log(JSON.stringify(data, null, 2));
    });
  device
    .command("simulate")
    .description(
      "run a fleet of metering machines and check that the chain charged exactly what they measured",
    )
    .option("--machines <n>", "number of machines", positiveInteger, 10)
    .option("--seconds <s>", "how long the machines meter", positiveNumber, 30)
    .option("--rate <units>", "mean usage per machine, units per second", nonNegativeNumber, 10)
    .option(
      "--rate-spread <0..1>",
      "spread of the machines' rates around --rate (0: all exactly --rate)",
      fraction,
      0.5,
    )
    .option("--key-types <types>", "mixed (both curves, alternating), p256 or secp256k1", "mixed")
    .option(
      "--offline-fraction <0..1>",
      "share of machines that go offline once at a random moment",
      fraction,
      0.2,
    )
    .option("--offline-seconds <s>", "length of each random offline period", nonNegativeNumber, 10)
    .option(
      "--offline <MACHINE:FROM-TO>",
      "scripted offline period, seconds from the start, repeatable (replaces the random ones)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--seed <n>", "seed of the random rates and offline periods", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected an integer ≥ 0");
      return n;
    })
    .option(
      "--publish-interval <ms>",
      "how often a machine re-publishes its newest unsettled reading",
      positiveInteger,
      5000,
    )
    .option(
      "--settle-timeout <s>",
      "how long to wait for settlement after metering",
      positiveNumber,
      180,
    )
    .option("--buffer-dir <dir>", "keep each machine's meter in a file here (restarts use it)")
    .option("--embedded", "start chain, contracts and oracle (embedded broker) in this process")
    .option("--rpc <url>", "JSON-RPC endpoint (without --embedded)", process.env.RPC_URL)
    .option("--contract <address>", "PayPerUse contract (without --embedded)", address)
    .option("--token <address>", "ERC-20 the tariffs are priced in (without --embedded)", address)
    .option("--broker <url>", "MQTT broker the oracle listens on (without --embedded)")
    .option("--broker-username <name>", "MQTT user name", process.env.MQTT_USERNAME)
    .option("--broker-password <secret>", "MQTT password (or MQTT_PASSWORD)")
    .option("--mqtt-version <4|5>", "MQTT protocol of the machines", "5")
    .option(
      "--owner-key <hex>",
      "key that registers the machines (or PPU_OWNER_KEY)",
      hexKey,
      process.env.PPU_OWNER_KEY as Hex | undefined,
    )
    .option(
      "--lessee-key <hex>",
      "key that opens and funds the agreements (or PPU_LESSEE_KEY)",
      hexKey,
      process.env.PPU_LESSEE_KEY as Hex | undefined,
    )
    .option(
      "--mint-key <hex>",
      "key allowed to mint the token to the lessee (local tokens)",
      hexKey,
    )
    .option("--deposit <amount>", "deposit per agreement, in the token's smallest unit", (v) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError("expected a whole number");
      return v;
    })
    .option("--json", "print the summary as JSON instead of text")
    .addHelpText("after", SIMULATE_HELP)
    .action(async (o: Record<string, unknown>) => {
      const keyTypes = o.keyTypes as string;
      if (!["mixed", "p256", "secp256k1"].includes(keyTypes))
        throw new Error(`--key-types must be mixed, p256 or secp256k1, not ${keyTypes}`);
      if (o.mqttVersion !== "4" && o.mqttVersion !== "5")
        throw new Error(`--mqtt-version must be 4 or 5, not ${String(o.mqttVersion)}`);
      const { simulate, formatSummary, parseOfflinePeriod } = await import("./simulate.ts");
      const offline: OfflinePeriod[] | undefined = (o.offline as string[] | undefined)?.map(
        parseOfflinePeriod,
      );
      const result = await simulate({
        machines: o.machines as number,
        seconds: o.seconds as number,
        rate: o.rate as number,
        rateSpread: o.rateSpread as number,
        keyTypes: keyTypes as "mixed",
        offlineFraction: o.offlineFraction as number,
        offlineSeconds: o.offlineSeconds as number,
        offline,
        seed: o.seed as number | undefined,
        publishIntervalMs: o.publishInterval as number,
        settleTimeoutS: o.settleTimeout as number,
        bufferDir: o.bufferDir as string | undefined,
        embedded: Boolean(o.embedded),
        rpcUrl: o.rpc as string | undefined,
        contract: o.contract as Address | undefined,
        token: o.token as Address | undefined,
        brokerUrl: o.broker as string | undefined,
        brokerUsername: o.brokerUsername as string | undefined,
        brokerPassword: (o.brokerPassword as string | undefined) ?? process.env.MQTT_PASSWORD,
        mqttVersion: Number(o.mqttVersion) as 4 | 5,
        ownerKey: o.ownerKey as Hex | undefined,
        lesseeKey: o.lesseeKey as Hex | undefined,
        mintKey: o.mintKey as Hex | undefined,
        deposit: o.deposit === undefined ? undefined : BigInt(o.deposit as string),
        onProgress: (line) => process.stderr.write(`… ${line}\n`),
      });
      process.stdout.write(
        o.json
          ? `${JSON.stringify(result, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2)}\n`
          : `${formatSummary(result)}\n`,
      );
      if (!result.ok) process.exitCode = 1;
    });
}
