/** `ppu agreement …`: open an escrowed agreement, top it up, close it, show it. */
import type { Command } from "commander";
import type { Address, Hex } from "viem";
import {
  AGREEMENT_STATUSES,
  AMOUNT_HELP,
  ZERO32,
  amountArg,
  bytes32Arg,
  connect,
  connectionOptions,
  daysArg,
  decimalsOption,
  durationArg,
  eventsOf,
  fail,
  formatAmount,
  formatDuration,
  formatTime,
  machineIdArg,
  positiveIntegerArg,
  print,
  printJson,
  progress,
  toUnits,
  type AgreementView,
  type AmountInput,
  type ConnectionOptions,
  type TokenInfo,
} from "./common.ts";
import type { TariffView } from "./tariff.ts";

interface AgreementOptions extends ConnectionOptions {
  machine: Hex;
  tariffVersion: bigint;
  deposit: AmountInput;
  days: bigint;
  cap?: AmountInput;
  capPeriod?: bigint;
  lowBalance?: AmountInput;
  disputeWindow?: bigint;
  mandateRef?: Hex;
  id: bigint;
  amount: AmountInput;
  json?: boolean;
}

const CLOSED = 3;

export function printAgreement(
  id: bigint,
  a: AgreementView,
  token: TokenInfo,
  unsettled: bigint,
  now: bigint,
): void {
  const status = AGREEMENT_STATUSES[a.status] ?? String(a.status);
  const closesAt = a.endTime + a.disputeWindow;
  print(`agreement ${id}: ${status}`);
  print(`  machine          ${a.machineId}`);
  print(`  lessee           ${a.lessee}`);
  print(`  tariff version   ${a.tariffVersion}`);
  print(`  token            ${token.symbol} ${a.token}`);
  print(`  escrow           ${formatAmount(a.escrow, token)}`);
  print(`  debt             ${formatAmount(a.debt, token)}`);
  print(`  total charged    ${formatAmount(a.totalCharged, token)}`);
  print(`  unsettled        ${formatAmount(unsettled, token)}`);
  print(`  metered units    ${a.cumulativeUnits}, last reading ${formatTime(a.lastReadingAt)}`);
  print(`  runs             ${formatTime(a.startTime)} to ${formatTime(a.endTime)}`);
  print(
    `  dispute window   ${formatDuration(a.disputeWindow)}${a.status === CLOSED ? "" : `: may close after ${formatTime(closesAt)}${now > closesAt ? " (now)" : ""}`}`,
  );
  print(
    `  spending cap     ${a.spendingCap === 0n ? "none" : `${formatAmount(a.spendingCap, token)} every ${formatDuration(a.capPeriod)}`}`,
  );
  print(
    `  low balance at   ${a.lowBalanceThreshold === 0n ? "—" : formatAmount(a.lowBalanceThreshold, token)}`,
  );
  print(`  mandate ref      ${a.mandateRef === ZERO32 ? "none" : a.mandateRef}`);
}

export function registerAgreementCommands(program: Command): void {
  const agreement = program
    .command("agreement")
    .description("agreements: open with an escrowed deposit, top up, close, show")
    .addHelpText(
      "after",
      "\nExample:\n  $ ppu agreement open --machine press-1 --tariff-version 1 --deposit 25.50 --days 30",
    );

  connectionOptions(
    decimalsOption(
      agreement
        .command("open")
        .description(
          "open an agreement for a machine, paying the deposit into escrow; prints its id",
        )
        .requiredOption("--machine <bytes32|name>", "machine id or name", machineIdArg)
        .requiredOption("--tariff-version <n>", "the tariff version to pay by", positiveIntegerArg)
        .requiredOption("--deposit <amount>", "paid into escrow now", amountArg)
        .requiredOption(
          "--days <n>",
          "days the agreement runs (usage after that is not charged)",
          daysArg,
        )
        .option(
          "--cap <amount>",
          "most the lessee pays per --cap-period (the rest is forgiven)",
          amountArg,
        )
        .option(
          "--cap-period <duration>",
          "spending-cap period: seconds or 1h, 1d, 1w …",
          durationArg,
        )
        .option(
          "--low-balance <amount>",
          "warn (LowBalance event) when the escrow falls below this",
          amountArg,
        )
        .option(
          "--dispute-window <duration>",
          "time after the end in which late readings still count (default: 1d)",
          durationArg,
        )
        .option(
          "--mandate-ref <0x…>",
          "reference of the SEPA mandate (from ppu bank mandate add)",
          bytes32Arg,
        )
        .addHelpText(
          "after",
          `\nThe contract is approved for the deposit first when its allowance is short.\n${AMOUNT_HELP}\n` +
            "\nExamples:\n" +
            "  $ PPU_KEY_FILE=lessee.key ppu agreement open --machine press-1 --tariff-version 1 \\\n" +
            "      --deposit 25.50 --days 30\n" +
            "  $ ppu agreement open --machine press-1 --tariff-version 2 --deposit 100.00 --days 90 \\\n" +
            "      --cap 40.00 --cap-period 30d --low-balance 10.00 --mandate-ref 0x9c1f…",
        ),
    ),
    { signer: true },
  ).action(async (o: AgreementOptions, command: Command) => {
    if (o.cap && o.capPeriod === undefined) fail("--cap needs a --cap-period.");
    if (o.capPeriod !== undefined && !o.cap) fail("--cap-period belongs to --cap: give --cap too.");
    if (o.tariffVersion >= 2n ** 32n) fail("--tariff-version must be below 2^32.");
    const ppu = await connect(command, o, { signer: true });
    await ppu.machine(o.machine);
    const tariff = await ppu.read<TariffView>("getTariff", [o.machine, Number(o.tariffVersion)]);
    const token = await ppu.token(tariff.token);
    const deposit = toUnits(o.deposit, token, "--deposit");
    const params = {
      machineId: o.machine,
      tariffVersion: Number(o.tariffVersion),
      deposit,
      endTime: (await ppu.now()) + o.days,
      spendingCap: o.cap ? toUnits(o.cap, token, "--cap") : 0n,
      capPeriod: o.capPeriod ?? 0n,
      lowBalanceThreshold: o.lowBalance ? toUnits(o.lowBalance, token, "--low-balance") : 0n,
      disputeWindow: o.disputeWindow ?? 86_400n,
      mandateRef: o.mandateRef ?? ZERO32,
    };
    await ppu.ensureAllowance(token, deposit, "deposit");
    const receipt = await ppu.send("openAgreement", [params]);
    const [event] = eventsOf<{ agreementId: bigint; deposit: bigint; endTime: bigint }>(
      ppu,
      receipt,
      "AgreementOpened",
    );
    if (!event) throw new Error("openAgreement succeeded without an AgreementOpened event.");
    if (o.json) {
      printJson({ agreementId: event.agreementId, deposit: event.deposit, endTime: event.endTime });
      return;
    }
    print(`opened agreement ${event.agreementId} for machine ${o.machine}`);
    print(`  deposit ${formatAmount(event.deposit, token)} in escrow`);
    print(`  tariff version ${o.tariffVersion}, runs until ${formatTime(BigInt(event.endTime))}`);
  });

  connectionOptions(
    decimalsOption(
      agreement
        .command("top-up")
        .description("add to an agreement's escrow; any debt is covered first")
        .requiredOption("--id <n>", "agreement id", positiveIntegerArg)
        .requiredOption("--amount <amount>", "amount to add", amountArg)
        .addHelpText(
          "after",
          `\nThe contract is approved for the amount first when its allowance is short.\n${AMOUNT_HELP}\n` +
            "\nExample:\n  $ ppu agreement top-up --id 7 --amount 10.00",
        ),
    ),
    { signer: true },
  ).action(async (o: AgreementOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: true });
    const a = await ppu.agreement(o.id);
    if (a.status === CLOSED) fail(`Agreement ${o.id} is closed; it takes no more top-ups.`);
    const token = await ppu.token(a.token);
    const amount = toUnits(o.amount, token, "--amount");
    if (amount === 0n) fail("--amount must be above zero.");
    await ppu.ensureAllowance(token, amount, "top-up");
    const receipt = await ppu.send("topUp", [o.id, amount]);
    const [event] = eventsOf<{ escrow: bigint; debtRepaid: bigint }>(
      ppu,
      receipt,
      "EscrowToppedUp",
    );
    print(`topped up agreement ${o.id} with ${formatAmount(amount, token)}`);
    if (event) {
      if (event.debtRepaid > 0n) print(`  debt repaid ${formatAmount(event.debtRepaid, token)}`);
      print(`  escrow now ${formatAmount(event.escrow, token)}`);
    }
  });

  connectionOptions(
    agreement
      .command("close")
      .description(
        "end an agreement now, or close it once its dispute window has passed (refunds the escrow)",
      )
      .requiredOption("--id <n>", "agreement id", positiveIntegerArg)
      .addHelpText(
        "after",
        "\nWhile the agreement runs, the lessee or the machine owner ends it now; the dispute window\n" +
          "starts. After the window anyone closes it: remaining base fees and the minimum charge are\n" +
          "charged and the rest of the escrow goes back to the lessee. Run it again after the window.\n" +
          "\nExample:\n  $ ppu agreement close --id 7",
      ),
    { signer: true },
  ).action(async (o: AgreementOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: true });
    const a = await ppu.agreement(o.id);
    if (a.status === CLOSED) fail(`Agreement ${o.id} is already closed.`);
    const token = await ppu.token(a.token);
    const now = await ppu.now();
    const closesAt = a.endTime + a.disputeWindow;
    if (now < a.endTime) {
      const receipt = await ppu.send("endAgreement", [o.id]);
      const [event] = eventsOf<{ endTime: bigint }>(ppu, receipt, "AgreementEnded");
      const end = BigInt(event?.endTime ?? now);
      print(`ended agreement ${o.id} at ${formatTime(end)}`);
      print(
        `  late readings count until ${formatTime(end + a.disputeWindow)}; close it after that with ppu agreement close --id ${o.id}`,
      );
      return;
    }
    if (now < closesAt) {
      fail(
        `Agreement ${o.id} ended at ${formatTime(a.endTime)}; its dispute window is open until ${formatTime(closesAt)}. Close it after that.`,
      );
    }
    progress(`closing agreement ${o.id}: escrow ${formatAmount(a.escrow, token)}`);
    const receipt = await ppu.send("closeAgreement", [o.id]);
    const [event] = eventsOf<{ refund: bigint; totalCharged: bigint }>(
      ppu,
      receipt,
      "AgreementClosed",
    );
    print(`closed agreement ${o.id}`);
    if (event) {
      print(`  refunded to the lessee ${a.lessee}: ${formatAmount(event.refund, token)}`);
      print(`  total charged ${formatAmount(event.totalCharged, token)}`);
    }
    if (eventsOf(ppu, receipt, "PayoutFailed").length > 0)
      print("  the token refused the refund: the lessee can take it with ppu withdraw");
  });

  connectionOptions(
    decimalsOption(
      agreement
        .command("show")
        .description("show an agreement: escrow, debt, charges, metered units, dates")
        .requiredOption("--id <n>", "agreement id", positiveIntegerArg)
        .option("--json", "print JSON")
        .addHelpText("after", "\nExample:\n  $ ppu agreement show --id 7"),
      false,
    ),
    { signer: false },
  ).action(async (o: AgreementOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: false });
    const a = await ppu.agreement(o.id);
    const [token, unsettled, now] = await Promise.all([
      ppu.token(a.token as Address),
      ppu.read<bigint>("unsettledEarnings", [o.id]),
      ppu.now(),
    ]);
    if (o.json) {
      printJson({
        agreementId: o.id,
        ...a,
        status: AGREEMENT_STATUSES[a.status],
        unsettledEarnings: unsettled,
        symbol: token.symbol,
        decimals: token.decimals,
      });
    } else printAgreement(o.id, a, token, unsettled, now);
  });
}
