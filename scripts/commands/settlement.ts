/** `ppu settle` pays agreements' accrued earnings to the machines' payouts; `ppu withdraw` pays credited earnings. */
import type { Command } from "commander";
import { erc20Abi, type Address, type Hex } from "viem";
import {
  addressArg,
  connect,
  connectionOptions,
  decimalsOption,
  eventsOf,
  formatAmount,
  formatTime,
  idListArg,
  print,
  progress,
  type ConnectionOptions,
} from "./common.ts";

interface SettlementOptions extends ConnectionOptions {
  agreements: bigint[];
  token: Address;
}

export function registerSettlementCommands(program: Command): void {
  connectionOptions(
    decimalsOption(
      program
        .command("settle")
        .description(
          "pay agreements' accrued earnings to their machines' payout addresses; request direct debits for debt",
        )
        .requiredOption("--agreements <ids>", "comma-separated agreement ids", idListArg)
        .addHelpText(
          "after",
          "\nAnyone may settle. A payout the token refuses (e.g. a blocklisted address) stays credited\n" +
            "to the payee, who takes it later with ppu withdraw; debt of an agreement with a mandate\n" +
            "becomes a SEPA direct-debit request for the bank bridge.\n" +
            "\nExample:\n  $ ppu settle --agreements 1,2,3",
        ),
      false,
    ),
    { signer: true },
  ).action(async (o: SettlementOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: true });
    for (const id of o.agreements) {
      const a = await ppu.agreement(id);
      const token = await ppu.token(a.token);
      const unsettled = await ppu.read<bigint>("unsettledEarnings", [id]);
      progress(
        `agreement ${id}: ${formatAmount(unsettled, token)} unsettled, debt ${formatAmount(a.debt, token)}`,
      );
    }
    const receipt = await ppu.send("settle", [o.agreements]);
    print(`settled agreement${o.agreements.length > 1 ? "s" : ""} ${o.agreements.join(", ")}`);
    const paid = eventsOf<{ payee: Address; token: Address; amount: bigint }>(
      ppu,
      receipt,
      "EarningsPaid",
    );
    const failed = eventsOf<{ payee: Address; token: Address; amount: bigint }>(
      ppu,
      receipt,
      "PayoutFailed",
    );
    const debits = eventsOf<{
      debitId: bigint;
      agreementId: bigint;
      token: Address;
      amount: bigint;
      dueDate: bigint;
      mandateRef: Hex;
    }>(ppu, receipt, "DirectDebitRequested");
    for (const p of paid)
      print(`  paid ${formatAmount(p.amount, await ppu.token(p.token))} to ${p.payee}`);
    for (const f of failed) {
      print(
        `  payout of ${formatAmount(f.amount, await ppu.token(f.token))} to ${f.payee} failed: it stays credited; the payee takes it with ppu withdraw --token ${f.token}`,
      );
    }
    for (const d of debits) {
      print(
        `  direct debit ${d.debitId} requested for agreement ${d.agreementId}: ${formatAmount(d.amount, await ppu.token(d.token))}, due ${formatTime(BigInt(d.dueDate))}`,
      );
    }
    if (paid.length + failed.length + debits.length === 0) print("  nothing was due");
  });

  connectionOptions(
    decimalsOption(
      program
        .command("withdraw")
        .description("pay the sending account's credited earnings (or refunds) in one token")
        .requiredOption("--token <address>", "the token to withdraw", addressArg)
        .addHelpText(
          "after",
          "\nSettlement pays earnings out directly; what a token refused to pay then (or a refund the\n" +
            "token refused to the lessee) stays credited until withdrawn here.\n" +
            "\nExample:\n  $ PPU_KEY_FILE=payout.key ppu withdraw --token 0x5FbDB2315678afecb367f032d93F642f64180aa3",
        ),
      false,
    ),
    { signer: true },
  ).action(async (o: SettlementOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: true });
    const payee = ppu.sender().address;
    const token = await ppu.token(o.token);
    const credited = await ppu.read<bigint>("earnings", [payee, o.token]);
    if (credited === 0n) {
      print(
        `nothing to withdraw: ${payee} has no credited earnings in ${token.symbol} (${o.token})`,
      );
      return;
    }
    progress(`${payee} has ${formatAmount(credited, token)} credited`);
    const receipt = await ppu.send("withdraw", [o.token]);
    const [event] = eventsOf<{ amount: bigint }>(ppu, receipt, "EarningsPaid");
    const balance = await ppu.client.readContract({
      address: o.token,
      abi: erc20Abi,
      functionName: "balanceOf",
      args: [payee],
    });
    print(`withdrew ${formatAmount(event?.amount ?? credited, token)} to ${payee}`);
    print(`  balance now ${formatAmount(balance, token)}`);
  });
}
