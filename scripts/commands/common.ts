/**
 * What the on-chain `ppu` commands share: the --rpc / --contract / --key / --key-file options (or
 * RPC_URL, CONTRACT_ADDRESS, PPU_KEY, PPU_KEY_FILE), parsers that refuse bad input before anything
 * is sent, token amounts given in smallest units or as decimals, and sending a transaction with
 * progress on stderr and a receipt line on stdout. A private key is never printed or logged.
 */
import { readFileSync, statSync } from "node:fs";
import { InvalidArgumentError, Option, type Command } from "commander";
import {
  createPublicClient,
  createWalletClient,
  erc20Abi,
  formatUnits,
  http,
  isAddress,
  isHex,
  keccak256,
  parseEventLogs,
  parseUnits,
  stringToHex,
  type Abi,
  type Address,
  type Chain,
  type Hex,
  type PrivateKeyAccount,
  type PublicClient,
  type TransactionReceipt,
  type WalletClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { payPerUseAbi } from "../../services/shared/artifacts.ts";
import { chainFor } from "../../services/shared/deployment.ts";
import { ValidationError } from "../../services/shared/errors.ts";
import { withTokenErrors } from "../../services/shared/revert.ts";

export const ZERO32: Hex = `0x${"00".repeat(32)}`;
export const TRUST_MODES = ["DeviceSigned", "OracleAttested"] as const;
export const KEY_TYPES = ["None", "Secp256k1", "P256"] as const;
export const AGREEMENT_STATUSES = ["None", "Active", "Suspended", "Closed"] as const;

/** Progress and notes for a person: stderr. */
export function progress(line: string): void {
  process.stderr.write(`… ${line}\n`);
}

/** The command's result: stdout. */
export function print(line = ""): void {
  process.stdout.write(`${line}\n`);
}

/** Prints a value as JSON, bigints as decimal strings. */
export function printJson(value: unknown): void {
  print(JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2));
}

/** A refusal of bad input or state, raised before any transaction is sent. */
export function fail(message: string, details?: string): never {
  throw new ValidationError(message, details ? { details } : undefined);
}

/* ------------------------------------------------------------------------------------------------
 * Parsers for commander options. They run while the command line is read, so bad input stops the
 * command before it connects to anything.
 * ----------------------------------------------------------------------------------------------*/

export function addressArg(value: string): Address {
  if (!isAddress(value)) {
    throw new InvalidArgumentError(
      "not an address: expected 0x and 40 hex digits (with a valid checksum when mixed case)",
    );
  }
  return value as Address;
}

/** A whole number ≥ 1, as a bigint. */
export function positiveIntegerArg(value: string): bigint {
  if (!/^\d+$/.test(value.trim()) || BigInt(value.trim()) < 1n)
    throw new InvalidArgumentError("not a number: expected a whole number ≥ 1");
  return BigInt(value.trim());
}

/** A whole number ≥ 0, as a bigint. */
export function wholeNumberArg(value: string): bigint {
  if (!/^\d+$/.test(value.trim()))
    throw new InvalidArgumentError("not a number: expected a whole number ≥ 0");
  return BigInt(value.trim());
}

/** A comma-separated list of whole numbers ≥ 1, e.g. agreement ids "1,2,3". */
export function idListArg(value: string): bigint[] {
  const parts = value.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p) || BigInt(p) < 1n))
    throw new InvalidArgumentError("expected comma-separated whole numbers ≥ 1, e.g. 1,2,3");
  return [...new Set(parts.map((p) => BigInt(p)))];
}

/** A duration: seconds, or a number with s, m, h, d or w (e.g. 90, 15m, 1d). */
export function durationArg(value: string): bigint {
  const match = /^(\d+)\s*([smhdw]?)$/.exec(value.trim());
  if (!match)
    throw new InvalidArgumentError("not a duration: expected seconds or e.g. 15m, 2h, 1d");
  const factor = { "": 1n, s: 1n, m: 60n, h: 3600n, d: 86_400n, w: 604_800n }[match[2]!]!;
  return BigInt(match[1]!) * factor;
}

/** A positive number of days, fractions allowed; returned in seconds. */
export function daysArg(value: string): bigint {
  const days = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(days > 0))
    throw new InvalidArgumentError("not a number: expected days > 0, e.g. 30 or 0.5");
  return BigInt(Math.round(days * 86_400));
}

export function bytes32Arg(value: string): Hex {
  if (!isHex(value) || value.length !== 66)
    throw new InvalidArgumentError("expected 32 bytes as hex: 0x and 64 hex digits");
  return value.toLowerCase() as Hex;
}

/**
 * A machine id: 32 bytes as hex, or a name whose keccak256 is the id (e.g. "press-1"), as in
 * docs/device.md.
 */
export function machineIdArg(value: string): Hex {
  if (/^0x/i.test(value)) {
    if (isHex(value) && value.length === 66) return value.toLowerCase() as Hex;
    throw new InvalidArgumentError(
      "starts with 0x but is not 32 bytes of hex; give 0x and 64 hex digits, or a name",
    );
  }
  if (value.trim() === "") throw new InvalidArgumentError("empty machine id");
  return keccak256(stringToHex(value));
}

/** An amount as typed: whole token units ("25500000") or a decimal ("25.50") to be scaled. */
export interface AmountInput {
  text: string;
  decimal: boolean;
}

export function amountArg(value: string): AmountInput {
  const text = value.trim().replace(/_/g, "");
  if (/^\d+$/.test(text)) return { text, decimal: false };
  if (/^(\d+\.\d*|\.\d+)$/.test(text)) return { text, decimal: true };
  throw new InvalidArgumentError(
    "not an amount: expected token units as a whole number (25500000) or a decimal (25.50)",
  );
}

export const AMOUNT_HELP =
  "Amounts: a whole number is in the token's smallest units (25500000); a number with a decimal\n" +
  "point is in tokens, scaled by the token's decimals() or --decimals (25.50 = 25500000 at 6).";

/**
 * Adds --decimals: the token's decimals for a command that takes amounts (`input`), or for one that
 * only prints them when the token has no decimals().
 */
export function decimalsOption(command: Command, input = true): Command {
  return command.option(
    "--decimals <n>",
    input
      ? "decimals of amounts written with a decimal point (default: the token's decimals())"
      : "decimals to print amounts with when the token has no decimals()",
    (value: string) => {
      if (!/^\d+$/.test(value) || Number(value) > 77)
        throw new InvalidArgumentError("expected a whole number from 0 to 77");
      return Number(value);
    },
  );
}

/* ------------------------------------------------------------------------------------------------
 * Tokens and amounts
 * ----------------------------------------------------------------------------------------------*/

export interface TokenInfo {
  address: Address;
  symbol: string;
  /** Undefined when the token has no decimals() and none was given. */
  decimals?: number;
}

/** Token smallest units from what was typed, or a refusal naming the option. */
export function toUnits(amount: AmountInput, token: TokenInfo, flag: string): bigint {
  if (!amount.decimal) {
    const units = BigInt(amount.text);
    if (token.decimals !== undefined && units > 0n && units < 10n ** BigInt(token.decimals)) {
      progress(
        `note: ${flag} ${amount.text} is in token units, i.e. ${decimalAmount(units, token)} ${token.symbol}; written ${amount.text}.00 it would mean ${amount.text} ${token.symbol}`,
      );
    }
    return units;
  }
  if (token.decimals === undefined) {
    fail(
      `${flag} ${amount.text} has a decimal point, but token ${token.address} has no decimals(): give --decimals or whole token units`,
    );
  }
  const [, fraction = ""] = amount.text.split(".");
  if (fraction.length > token.decimals) {
    fail(
      `${flag} ${amount.text} has more decimal places than the token's ${token.decimals} decimals`,
    );
  }
  return parseUnits(amount.text.startsWith(".") ? `0${amount.text}` : amount.text, token.decimals);
}

/** "25.50 EURC (25500000 units)", or "25500000 units" when the decimals are unknown. */
export function formatAmount(units: bigint, token: TokenInfo): string {
  if (token.decimals === undefined) return `${units} units`;
  return `${decimalAmount(units, token)} ${token.symbol} (${units} units)`;
}

/** The amount as a decimal with at least two places (for money) when the token has them. */
export function decimalAmount(units: bigint, token: TokenInfo): string {
  if (token.decimals === undefined) return units.toString();
  const text = formatUnits(units, token.decimals);
  if (token.decimals < 2) return text;
  const [whole, fraction = ""] = text.split(".");
  return `${whole}.${fraction.padEnd(2, "0")}`;
}

export function formatTime(seconds: bigint): string {
  if (seconds === 0n) return "—";
  return new Date(Number(seconds) * 1000).toISOString().replace(".000Z", "Z");
}

export function formatDuration(seconds: bigint): string {
  if (seconds === 0n) return "0 s";
  for (const [unit, size] of [
    ["d", 86_400n],
    ["h", 3600n],
    ["m", 60n],
  ] as const) {
    if (seconds % size === 0n) return `${seconds / size} ${unit}`;
  }
  return `${seconds} s`;
}

/* ------------------------------------------------------------------------------------------------
 * Connection options and the connection
 * ----------------------------------------------------------------------------------------------*/

export interface ConnectionOptions {
  rpc?: string;
  contract?: Address;
  key?: string;
  keyFile?: string;
  decimals?: number;
}

/** Adds --rpc and --contract, and with `signer` --key and --key-file. */
export function connectionOptions(command: Command, { signer }: { signer: boolean }): Command {
  command
    .addOption(
      new Option("--rpc <url>", "JSON-RPC endpoint of the chain")
        .env("RPC_URL")
        .makeOptionMandatory(),
    )
    .addOption(
      new Option("--contract <address>", "address of the PayPerUse contract")
        .env("CONTRACT_ADDRESS")
        .argParser(addressArg)
        .makeOptionMandatory(),
    );
  if (signer) {
    command
      .addOption(
        new Option(
          "--key-file <file>",
          "file holding the sending account's private key as hex",
        ).env("PPU_KEY_FILE"),
      )
      .addOption(
        new Option(
          "--key <hex>",
          "the sending account's private key (prefer --key-file: a command line shows in the process list)",
        ).env("PPU_KEY"),
      );
  }
  return command;
}

function readAccountKey(command: Command, options: ConnectionOptions): Hex {
  const sourceOf = (name: string) => command.getOptionValueSource(name);
  const given = [
    options.key ? { name: "key", source: sourceOf("key") } : undefined,
    options.keyFile ? { name: "keyFile", source: sourceOf("keyFile") } : undefined,
  ].filter((g) => g !== undefined);
  if (given.length === 0) {
    fail(
      "This command sends a transaction and needs the account's key: --key-file FILE or PPU_KEY_FILE (or --key / PPU_KEY).",
    );
  }
  // A flag on the command line wins over the environment; two of the same kind are ambiguous.
  const fromCli = given.filter((g) => g.source === "cli");
  const chosen = fromCli.length > 0 ? fromCli : given;
  if (chosen.length > 1) fail("Give the account's key once: either --key or --key-file, not both.");
  if (chosen[0]!.name === "key") {
    const key = options.key!.trim();
    if (!/^(0x)?[0-9a-fA-F]{64}$/.test(key))
      fail("The account key (--key or PPU_KEY) is not a 32-byte hex private key.");
    return (key.startsWith("0x") ? key : `0x${key}`) as Hex;
  }
  const file = options.keyFile!;
  let text: string;
  try {
    text = readFileSync(file, "utf8").trim();
  } catch (error) {
    fail(`Cannot read the key file ${file}: ${(error as NodeJS.ErrnoException).code ?? "error"}.`);
  }
  if (text.startsWith("-----BEGIN"))
    fail(`The key file ${file} holds a PEM key (a device key?), not an account's hex private key.`);
  if (!/^(0x)?[0-9a-fA-F]{64}$/.test(text))
    fail(`The key file ${file} does not hold a 32-byte hex private key.`);
  if (process.platform !== "win32" && (statSync(file).mode & 0o077) !== 0)
    progress(`warning: the key file ${file} is readable by others; chmod 600 it`);
  return (text.startsWith("0x") ? text : `0x${text}`) as Hex;
}

export interface Ppu {
  chain: Chain;
  client: PublicClient;
  contract: Address;
  abi: Abi;
  /** The sending account; set when the command was connected as a signer. */
  account?: PrivateKeyAccount;
  read<T>(functionName: string, args?: readonly unknown[]): Promise<T>;
  /** Simulates, sends and waits; a refusal by the contract is thrown before anything is sent. */
  send(
    functionName: string,
    args: readonly unknown[],
    target?: { address: Address; abi: Abi },
  ): Promise<TransactionReceipt>;
  /** The account that sends, or a refusal when no key was given. */
  sender(): PrivateKeyAccount;
  token(address: Address): Promise<TokenInfo>;
  /** Time of the newest block, in Unix seconds. */
  now(): Promise<bigint>;
  machine(machineId: Hex): Promise<MachineView>;
  agreement(agreementId: bigint): Promise<AgreementView>;
  /** Approves the contract for `amount` of `token` when the allowance is short. */
  ensureAllowance(token: TokenInfo, amount: bigint, what: string): Promise<void>;
}

export interface MachineView {
  owner: Address;
  payout: Address;
  trustMode: number;
  keyType: number;
  keyVersion: number;
  maxUnitsPerHour: bigint;
  keyX: Hex;
  keyY: Hex;
  tariffCount: number;
}

export interface AgreementView {
  machineId: Hex;
  lessee: Address;
  token: Address;
  tariffVersion: number;
  status: number;
  startTime: bigint;
  endTime: bigint;
  disputeWindow: bigint;
  escrow: bigint;
  debt: bigint;
  cumulativeUnits: bigint;
  lastReadingAt: bigint;
  totalCharged: bigint;
  spendingCap: bigint;
  capPeriod: bigint;
  lowBalanceThreshold: bigint;
  mandateRef: Hex;
}

/** ERC-20 approve without a return value, so tokens that return nothing (USDT) work too. */
const approveAbi = [
  {
    type: "function",
    name: "approve",
    stateMutability: "nonpayable",
    inputs: [
      { name: "spender", type: "address" },
      { name: "amount", type: "uint256" },
    ],
    outputs: [],
  },
] as const satisfies Abi;

/**
 * Connects to the chain and the contract. With `signer`, the account key is read and checked
 * first, so a missing or malformed key is reported before anything else happens.
 */
export async function connect(
  command: Command,
  options: ConnectionOptions,
  { signer }: { signer: boolean },
): Promise<Ppu> {
  const key = signer ? readAccountKey(command, options) : undefined;
  const rpc = options.rpc ?? "";
  if (rpc.trim() === "") fail("The chain's JSON-RPC endpoint is required: --rpc URL or RPC_URL.");
  try {
    new URL(rpc);
  } catch {
    fail(`--rpc (or RPC_URL) is not a URL: ${rpc}`);
  }
  let chain: Chain;
  try {
    chain = await chainFor(rpc);
  } catch (error) {
    fail(`Cannot reach the chain at ${rpc}.`, (error as { shortMessage?: string }).shortMessage);
  }
  const client = createPublicClient({ chain, transport: http(rpc) }) as PublicClient;
  const contract = options.contract!;
  const code = await client.getCode({ address: contract });
  if (!code || code === "0x") fail(`There is no contract at ${contract} on chain ${chain.id}.`);
  const abi = payPerUseAbi();
  const errorsAbi = withTokenErrors(abi);
  const account = key ? privateKeyToAccount(key) : undefined;
  const wallet: WalletClient | undefined = account
    ? createWalletClient({ account, chain, transport: http(rpc) })
    : undefined;
  const tokens = new Map<Address, TokenInfo>();

  const ppu: Ppu = {
    chain,
    client,
    contract,
    abi,
    account,
    async read<T>(functionName: string, args: readonly unknown[] = []) {
      return (await client.readContract({
        address: contract,
        abi,
        functionName,
        args,
      } as never)) as T;
    },
    sender() {
      if (!account) fail("This command needs the account's key: --key-file or PPU_KEY_FILE.");
      return account;
    },
    async send(functionName, args, target) {
      const from = ppu.sender();
      const address = target?.address ?? contract;
      const callAbi = target ? [...target.abi, ...errorsAbi] : errorsAbi;
      const { request } = await client.simulateContract({
        account: from,
        address,
        abi: callAbi,
        functionName,
        args,
      } as never);
      const balance = await client.getBalance({ address: from.address });
      if (balance === 0n)
        fail(`The account ${from.address} holds no ether to pay for gas on chain ${chain.id}.`);
      const hash = await wallet!.writeContract(request as never);
      progress(`${functionName}: sent ${hash} from ${from.address}, waiting for the receipt`);
      const receipt = await client.waitForTransactionReceipt({ hash });
      if (receipt.status !== "success")
        throw new Error(`${functionName} reverted in block ${receipt.blockNumber} (tx ${hash}).`);
      print(`${functionName}: block ${receipt.blockNumber}, tx ${hash}, gas ${receipt.gasUsed}`);
      return receipt;
    },
    async token(address) {
      let info = tokens.get(address);
      if (info === undefined) {
        const tokenCode = await client.getCode({ address });
        if (!tokenCode || tokenCode === "0x") fail(`There is no token contract at ${address}.`);
        const [symbol, decimals] = await Promise.all([
          client
            .readContract({ address, abi: erc20Abi, functionName: "symbol" })
            .catch(() => "tokens"),
          client
            .readContract({ address, abi: erc20Abi, functionName: "decimals" })
            .then(Number)
            .catch(() => undefined),
        ]);
        if (
          options.decimals !== undefined &&
          decimals !== undefined &&
          decimals !== options.decimals
        )
          fail(
            `--decimals ${options.decimals} does not match the decimals() of ${symbol} (${address}): ${decimals}.`,
          );
        info = { address, symbol, decimals: decimals ?? options.decimals };
        tokens.set(address, info);
      }
      return info;
    },
    async now() {
      return (await client.getBlock({ blockTag: "latest" })).timestamp;
    },
    async machine(machineId) {
      const m = await ppu.read<MachineView>("getMachine", [machineId]);
      if (m.owner === "0x0000000000000000000000000000000000000000")
        fail(`No machine is registered with id ${machineId}.`);
      return m;
    },
    async agreement(agreementId) {
      const a = await ppu.read<AgreementView>("getAgreement", [agreementId]);
      if (a.status === 0) fail(`There is no agreement ${agreementId}.`);
      return a;
    },
    async ensureAllowance(token, amount, what) {
      const from = ppu.sender();
      const [balance, allowance] = await Promise.all([
        client.readContract({
          address: token.address,
          abi: erc20Abi,
          functionName: "balanceOf",
          args: [from.address],
        }),
        client.readContract({
          address: token.address,
          abi: erc20Abi,
          functionName: "allowance",
          args: [from.address, contract],
        }),
      ]);
      if (balance < amount) {
        fail(
          `The account ${from.address} holds ${formatAmount(balance, token)}, less than the ${what} of ${formatAmount(amount, token)}.`,
        );
      }
      if (allowance >= amount) return;
      progress(
        `the contract may take ${formatAmount(allowance, token)} of ${from.address}: approving ${formatAmount(amount, token)}`,
      );
      const target = { address: token.address, abi: approveAbi as Abi };
      if (allowance > 0n) {
        // Some tokens (USDT) refuse to change one non-zero allowance into another.
        const direct = await client
          .simulateContract({
            account: from,
            address: token.address,
            abi: approveAbi,
            functionName: "approve",
            args: [contract, amount],
          })
          .then(() => true)
          .catch(() => false);
        if (!direct) await ppu.send("approve", [contract, 0n], target);
      }
      await ppu.send("approve", [contract, amount], target);
    },
  };
  return ppu;
}

/** Decoded events of one name from a receipt. */
export function eventsOf<T>(ppu: Ppu, receipt: TransactionReceipt, eventName: string): T[] {
  const logs = receipt.logs.filter((l) => l.address.toLowerCase() === ppu.contract.toLowerCase());
  return (parseEventLogs({ abi: ppu.abi, logs, eventName }) as unknown as { args: T }[]).map(
    (l) => l.args,
  );
}
