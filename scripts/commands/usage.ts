/**
 * `ppu usage`: an agreement's charged readings (UsageRecorded events) read from the chain in block
 * chunks, as a table or CSV.
 */
import { InvalidArgumentError, type Command } from "commander";
import type { AbiEvent, Hex, PublicClient } from "viem";
import {
  connect,
  connectionOptions,
  decimalAmount,
  decimalsOption,
  fail,
  formatAmount,
  formatTime,
  positiveIntegerArg,
  print,
  progress,
  type ConnectionOptions,
} from "./common.ts";

type Bound = { block: bigint } | { time: bigint };

interface UsageOptions extends ConnectionOptions {
  agreement: bigint;
  from?: Bound;
  to?: Bound;
  chunk?: bigint;
  csv?: boolean;
}

export interface UsageRow {
  timestamp: bigint;
  block: bigint;
  cumulativeUnits: bigint;
  units: bigint;
  charge: bigint;
  escrow: bigint;
  debt: bigint;
  tx: Hex;
}

function boundArg(value: string): Bound {
  const text = value.trim();
  if (/^\d+$/.test(text)) return { block: BigInt(text) };
  const ms = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(ms))
    throw new InvalidArgumentError(
      "expected a block number or a date/time (2026-03-01, 2026-03-01T08:00Z)",
    );
  return { time: BigInt(Math.floor(ms / 1000)) };
}

/** The first block at or after `seconds` (head + 1 when there is none yet). */
async function firstBlockAt(client: PublicClient, seconds: bigint, head: bigint): Promise<bigint> {
  const time = async (n: bigint) => (await client.getBlock({ blockNumber: n })).timestamp;
  if ((await time(head)) < seconds) return head + 1n;
  let lo = 0n;
  let hi = head;
  while (lo < hi) {
    const mid = (lo + hi) / 2n;
    if ((await time(mid)) < seconds) lo = mid + 1n;
    else hi = mid;
  }
  return lo;
}

/** The last block at or before `seconds`. */
async function lastBlockAt(client: PublicClient, seconds: bigint, head: bigint): Promise<bigint> {
  const first = await firstBlockAt(client, seconds + 1n, head);
  return first === 0n ? 0n : first - 1n;
}

function table(header: string[], rows: string[][], rightAligned: boolean[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (rightAligned[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

function csvCell(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

export function registerUsageCommand(program: Command): void {
  connectionOptions(
    decimalsOption(
      program
        .command("usage")
        .description(
          "list an agreement's charged readings, read from the chain's UsageRecorded events",
        )
        .requiredOption("--agreement <id>", "agreement id", positiveIntegerArg)
        .option(
          "--from <date|block>",
          "first block, or a date/time (default: the agreement's start)",
          boundArg,
        )
        .option(
          "--to <date|block>",
          "last block, or a date/time (default: the newest block)",
          boundArg,
        )
        .option("--chunk <blocks>", "blocks per log request (default: 10000)", positiveIntegerArg)
        .option("--csv", "print CSV (amounts as decimals and in token units)")
        .addHelpText(
          "after",
          "\nColumns: the reading's time (the machine's clock), block, the meter (cumulative units), units\n" +
            "added, charge, escrow and debt after the charge, transaction. Progress goes to stderr.\n" +
            "\nExamples:\n" +
            "  $ ppu usage --agreement 7\n" +
            "  $ ppu usage --agreement 7 --from 2026-03-01 --csv > march.csv\n" +
            "  $ ppu usage --agreement 7 --from 19000000 --chunk 2000",
        ),
      false,
    ),
    { signer: false },
  ).action(async (o: UsageOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: false });
    const a = await ppu.agreement(o.agreement);
    const token = await ppu.token(a.token);
    const head = await ppu.client.getBlockNumber();
    const resolve = async (bound: Bound, first: boolean) => {
      if ("block" in bound) return bound.block;
      return first
        ? firstBlockAt(ppu.client, bound.time, head)
        : lastBlockAt(ppu.client, bound.time, head);
    };
    const from = await resolve(o.from ?? { time: a.startTime }, true);
    const to = o.to ? await resolve(o.to, false) : head;
    if (o.to && "block" in o.to && o.to.block > head)
      fail(`--to ${o.to.block} is beyond the newest block ${head}.`);

    const event = ppu.abi.find(
      (item) => item.type === "event" && item.name === "UsageRecorded",
    ) as AbiEvent;
    const rows: UsageRow[] = [];
    let chunk = o.chunk ?? 10_000n;
    for (let start = from; start <= to;) {
      const end = start + chunk - 1n < to ? start + chunk - 1n : to;
      let logs;
      try {
        logs = await ppu.client.getLogs({
          address: ppu.contract,
          event,
          args: { agreementId: o.agreement },
          fromBlock: start,
          toBlock: end,
        });
      } catch (error) {
        // Nodes limit the range of one request: halve the chunk and ask again.
        if (chunk === 1n) throw error;
        chunk = chunk / 2n;
        progress(`the node refused blocks ${start}–${end}; asking for ${chunk} blocks at a time`);
        continue;
      }
      for (const log of logs as unknown as {
        args: Record<string, bigint>;
        blockNumber: bigint;
        transactionHash: Hex;
      }[]) {
        rows.push({
          timestamp: BigInt(log.args.timestamp!),
          block: log.blockNumber,
          cumulativeUnits: log.args.cumulativeUnits!,
          units: log.args.units!,
          charge: log.args.charge!,
          escrow: log.args.escrow!,
          debt: log.args.debt!,
          tx: log.transactionHash,
        });
      }
      progress(`blocks ${start}–${end} of ${from}–${to}: ${rows.length} reading(s) so far`);
      start = end + 1n;
    }

    if (o.csv) {
      print(
        "time,block,cumulative_units,units,charge,escrow,debt,charge_units,escrow_units,debt_units,tx",
      );
      for (const r of rows) {
        print(
          [
            formatTime(r.timestamp),
            r.block,
            r.cumulativeUnits,
            r.units,
            decimalAmount(r.charge, token),
            decimalAmount(r.escrow, token),
            decimalAmount(r.debt, token),
            r.charge,
            r.escrow,
            r.debt,
            r.tx,
          ]
            .map((v) => csvCell(String(v)))
            .join(","),
        );
      }
      return;
    }
    if (rows.length === 0) {
      print(`no usage recorded for agreement ${o.agreement} in blocks ${from}–${to}`);
      return;
    }
    const sym = token.decimals === undefined ? "units" : token.symbol;
    const lines = table(
      [
        "time",
        "block",
        "cumulative units",
        "units",
        `charge ${sym}`,
        `escrow ${sym}`,
        `debt ${sym}`,
        "tx",
      ],
      rows.map((r) => [
        formatTime(r.timestamp),
        String(r.block),
        String(r.cumulativeUnits),
        String(r.units),
        decimalAmount(r.charge, token),
        decimalAmount(r.escrow, token),
        decimalAmount(r.debt, token),
        r.tx,
      ]),
      [false, true, true, true, true, true, true, false],
    );
    for (const line of lines) print(line);
    const units = rows.reduce((sum, r) => sum + r.units, 0n);
    const charged = rows.reduce((sum, r) => sum + r.charge, 0n);
    print(
      `${rows.length} reading(s) in blocks ${from}–${to}: ${units} units, charged ${formatAmount(charged, token)}`,
    );
  });
}
