#!/usr/bin/env -S npx tsx
import { Command } from "commander";

type Register = (program: Command) => void;

const settlement = async (): Promise<Register> =>
  (await import("./commands/settlement.ts")).registerSettlementCommands;

/**
 * Each top-level command and the module that registers it. A command loads only its own module (and
 * what that needs), so `ppu bank export` does not pay for the oracle's or the API's code; `--help`
 * without a command loads them all to list them.
 */
const COMMANDS: Record<string, () => Promise<Register>> = {
  deploy: async () => (await import("./commands/deploy.ts")).registerDeployCommand,
  device: async () => (await import("../services/device/cli.ts")).registerDeviceCommands,
  bank: async () => (await import("../services/bank/cli.ts")).registerBankCommands,
  oracle: async () => (await import("../services/oracle/cli.ts")).registerOracleCommands,
  api: async () => (await import("../services/api/cli.ts")).registerApiCommands,
  machine: async () => (await import("./commands/machine.ts")).registerMachineCommands,
  tariff: async () => (await import("./commands/tariff.ts")).registerTariffCommands,
  agreement: async () => (await import("./commands/agreement.ts")).registerAgreementCommands,
  settle: settlement,
  withdraw: settlement,
  usage: async () => (await import("./commands/usage.ts")).registerUsageCommand,
};

const program = new Command();
program
  .name("ppu")
  .description("Pay-per-use platform command line")
  .addHelpText(
    "after",
    "\nExamples:\n  $ ppu deploy --help\n  $ ppu device keygen --curve p256 --out device.pem\n  $ ppu bank export",
  );

const requested = process.argv[2];
const loaders =
  requested !== undefined && COMMANDS[requested]
    ? [COMMANDS[requested]]
    : [...new Set(Object.values(COMMANDS))];
for (const register of await Promise.all(loaders.map((load) => load()))) register(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  let message: string;
  try {
    const { explainRevert, withTokenErrors } = await import("../services/shared/revert.ts");
    const { payPerUseAbi } = await import("../services/shared/artifacts.ts");
    message = explainRevert(error, withTokenErrors(payPerUseAbi()));
  } catch {
    message = error instanceof Error ? error.message : String(error);
  }
  process.stderr.write(`${message}\n`);
  process.exitCode = 1;
}
