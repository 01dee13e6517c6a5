#!/usr/bin/env -S npx tsx
import { Command } from "commander";
import { registerApiCommands } from "../services/api/cli.ts";
import { registerBankCommands } from "../services/bank/cli.ts";
import { registerDeviceCommands } from "../services/device/cli.ts";
import { registerOracleCommands } from "../services/oracle/cli.ts";
import { payPerUseAbi } from "../services/shared/artifacts.ts";
import { explainRevert, withTokenErrors } from "../services/shared/revert.ts";
import { registerAgreementCommands } from "./commands/agreement.ts";
import { registerDeployCommand } from "./commands/deploy.ts";
import { registerMachineCommands } from "./commands/machine.ts";
import { registerSettlementCommands } from "./commands/settlement.ts";
import { registerTariffCommands } from "./commands/tariff.ts";
import { registerUsageCommand } from "./commands/usage.ts";

const program = new Command();
program
  .name("ppu")
  .description("Pay-per-use platform command line")
  .addHelpText(
    "after",
    "\nExamples:\n  $ ppu deploy --help\n  $ ppu device keygen --curve p256 --out device.pem\n  $ ppu bank export",
  );
registerDeployCommand(program);
registerDeviceCommands(program);
registerBankCommands(program);
registerOracleCommands(program);
registerApiCommands(program);
registerMachineCommands(program);
registerTariffCommands(program);
registerAgreementCommands(program);
registerSettlementCommands(program);
registerUsageCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  let message: string;
  try {
    message = explainRevert(error, withTokenErrors(payPerUseAbi()));
  } catch {
    message = error instanceof Error ? error.message : String(error);
  }
  process.stderr.write(`${message}\n`);
  process.exitCode = 1;
}
