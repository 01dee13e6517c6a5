/** `ppu tariff …`: publish an immutable tariff version for a machine, show one. */
import { InvalidArgumentError, type Command } from "commander";
import type { Address, Hex } from "viem";
import {
  AMOUNT_HELP,
  addressArg,
  amountArg,
  connect,
  connectionOptions,
  decimalsOption,
  durationArg,
  eventsOf,
  fail,
  formatAmount,
  formatDuration,
  machineIdArg,
  positiveIntegerArg,
  print,
  printJson,
  toUnits,
  type AmountInput,
  type ConnectionOptions,
  type TokenInfo,
} from "./common.ts";

export interface TariffView {
  token: Address;
  unit: string;
  price: bigint;
  unitScale: bigint;
  tiers: readonly { fromUnits: bigint; price: bigint }[];
  minimumCharge: bigint;
  baseFee: bigint;
  period: bigint;
}

interface TierInput {
  fromUnits: bigint;
  price: AmountInput;
}

interface TariffOptions extends ConnectionOptions {
  machine: Hex;
  unit: string;
  price: AmountInput;
  unitScale: bigint;
  tier?: TierInput[];
  minimumCharge?: AmountInput;
  baseFee?: AmountInput;
  period?: bigint;
  token: Address;
  version?: bigint;
  json?: boolean;
}

function tierArg(value: string, previous: TierInput[] = []): TierInput[] {
  const match = /^\s*(\d+)\s*:\s*(\S+)\s*$/.exec(value);
  if (!match)
    throw new InvalidArgumentError(
      "expected FROM:PRICE, e.g. 100000:0.20 (cumulative units:price)",
    );
  return [...previous, { fromUnits: BigInt(match[1]!), price: amountArg(match[2]!) }];
}

export function printTariff(machineId: Hex, version: bigint, t: TariffView, token: TokenInfo) {
  print(`tariff version ${version} of machine ${machineId}`);
  print(
    `  token          ${token.symbol} ${t.token}${token.decimals === undefined ? "" : `, ${token.decimals} decimals`}`,
  );
  print(`  unit           ${t.unit}, priced per ${t.unitScale} metered units`);
  print(`  price          ${formatAmount(t.price, token)} per ${t.unitScale} units`);
  for (const tier of t.tiers)
    print(
      `  from ${tier.fromUnits} units: ${formatAmount(tier.price, token)} per ${t.unitScale} units`,
    );
  print(`  minimum charge ${formatAmount(t.minimumCharge, token)}`);
  print(
    `  base fee       ${t.period === 0n ? "none" : `${formatAmount(t.baseFee, token)} every ${formatDuration(t.period)}`}`,
  );
}

export function registerTariffCommands(program: Command): void {
  const tariff = program
    .command("tariff")
    .description("tariffs: publish an immutable version for a machine, show one")
    .addHelpText(
      "after",
      "\nExample:\n  $ ppu tariff publish --machine press-1 --unit kWh --price 0.25 --unit-scale 1000 --token 0x5FbD…",
    );

  connectionOptions(
    decimalsOption(
      tariff
        .command("publish")
        .description("publish a new tariff version for one of your machines; prints its number")
        .requiredOption("--machine <bytes32|name>", "machine id or name", machineIdArg)
        .requiredOption("--unit <name>", 'unit name shown to lessees, e.g. "kWh", "cycles"')
        .requiredOption("--price <amount>", "price per --unit-scale metered units", amountArg)
        .requiredOption(
          "--unit-scale <n>",
          "metered units the price refers to (1000 when metering Wh and pricing per kWh)",
          positiveIntegerArg,
        )
        .requiredOption("--token <address>", "ERC-20 the agreements pay in", addressArg)
        .option(
          "--tier <from:price>",
          "volume tier: from FROM cumulative units on, PRICE applies (repeatable, ascending)",
          tierArg,
        )
        .option("--minimum-charge <amount>", "least an agreement pays over its life", amountArg)
        .option("--base-fee <amount>", "charged once for every started --period", amountArg)
        .option("--period <duration>", "base-fee period: seconds or 1h, 1d, 1w …", durationArg)
        .addHelpText(
          "after",
          `\n${AMOUNT_HELP}\n` +
            "\nExamples:\n" +
            "  # 0.25 EURC per kWh metered in Wh, 0.20 from 100 kWh on, 5 EURC a month\n" +
            "  $ ppu tariff publish --machine press-1 --unit kWh --price 0.25 --unit-scale 1000 \\\n" +
            "      --tier 100000:0.20 --base-fee 5.00 --period 30d --token 0x5FbDB2315678afecb367f032d93F642f64180aa3\n" +
            "  # 120000 token units per 100 cycles, at least 10.00\n" +
            "  $ ppu tariff publish --machine 0x3f…e1 --unit cycles --price 120000 --unit-scale 100 \\\n" +
            "      --minimum-charge 10.00 --token 0x5FbD…",
        ),
    ),
    { signer: true },
  ).action(async (o: TariffOptions, command: Command) => {
    if (o.unit.trim() === "") fail("--unit must name the unit, e.g. kWh.");
    if (o.unitScale >= 2n ** 64n) fail("--unit-scale must be below 2^64.");
    let previous = 0n;
    for (const [i, tier] of (o.tier ?? []).entries()) {
      if (tier.fromUnits <= previous) {
        fail(
          `--tier ${tier.fromUnits}:… must start above ${i === 0 ? "zero" : `the previous tier (${previous})`}: tiers ascend strictly.`,
        );
      }
      previous = tier.fromUnits;
    }
    if (o.baseFee && o.period === undefined) fail("--base-fee needs a --period.");
    if (o.period !== undefined && !o.baseFee)
      fail("--period is the base-fee period: give --base-fee too.");
    if (o.period === 0n) fail("--period must be above zero.");

    const ppu = await connect(command, o, { signer: true });
    await ppu.machine(o.machine);
    const token = await ppu.token(o.token);
    const params = {
      token: o.token,
      unit: o.unit,
      price: toUnits(o.price, token, "--price"),
      unitScale: o.unitScale,
      tiers: (o.tier ?? []).map((t) => ({
        fromUnits: t.fromUnits,
        price: toUnits(t.price, token, "--tier"),
      })),
      minimumCharge: o.minimumCharge ? toUnits(o.minimumCharge, token, "--minimum-charge") : 0n,
      baseFee: o.baseFee ? toUnits(o.baseFee, token, "--base-fee") : 0n,
      period: o.period ?? 0n,
    };
    const receipt = await ppu.send("publishTariff", [o.machine, params]);
    const [event] = eventsOf<{ version: number }>(ppu, receipt, "TariffPublished");
    const version = BigInt(event!.version);
    print(`published tariff version ${version} of machine ${o.machine}`);
    print(`  ${formatAmount(params.price, token)} per ${params.unitScale} units (${params.unit})`);
  });

  connectionOptions(
    decimalsOption(
      tariff
        .command("show")
        .description("show a tariff version of a machine (default: the newest)")
        .requiredOption("--machine <bytes32|name>", "machine id or name", machineIdArg)
        .option("--version <n>", "tariff version (versions count from 1)", positiveIntegerArg)
        .option("--json", "print JSON")
        .addHelpText("after", "\nExample:\n  $ ppu tariff show --machine press-1 --version 2"),
      false,
    ),
    { signer: false },
  ).action(async (o: TariffOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: false });
    const machine = await ppu.machine(o.machine);
    const version = o.version ?? BigInt(machine.tariffCount);
    if (version === 0n) fail(`Machine ${o.machine} has no tariff yet.`);
    if (version >= 2n ** 32n) fail("--version must be below 2^32.");
    const t = await ppu.read<TariffView>("getTariff", [o.machine, Number(version)]);
    const token = await ppu.token(t.token);
    if (o.json)
      printJson({
        machineId: o.machine,
        version,
        ...t,
        symbol: token.symbol,
        decimals: token.decimals,
      });
    else printTariff(o.machine, version, t, token);
  });
}
