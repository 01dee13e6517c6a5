/**
 * The bridge's view of the chain: direct-debit events in block ranges, and the two bank
 * transactions (confirm a collection, report a return), each checked against the debit's current
 * on-chain status first so that a retried import never sends one twice.
 */
import {
  createPublicClient,
  createWalletClient,
  erc20Abi,
  http,
  maxUint256,
  parseEventLogs,
  stringToHex,
  type Abi,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { payPerUseAbi } from "../shared/artifacts.ts";
import { chainFor } from "../shared/deployment.ts";
import { ChainError } from "../shared/errors.ts";
import { explainRevert, withTokenErrors } from "../shared/revert.ts";

export const DEBIT_STATUS = ["none", "requested", "collected", "returned"] as const;
export type DebitChainStatus = (typeof DEBIT_STATUS)[number];

export interface DebitRequestedEvent {
  kind: "requested";
  debitId: bigint;
  agreementId: bigint;
  mandateRef: Hex;
  token: Address;
  amount: bigint;
  dueDate: bigint;
  blockNumber: bigint;
  txHash: Hex;
}

export interface DebitOutcomeEvent {
  kind: "collected" | "returned";
  debitId: bigint;
  blockNumber: bigint;
  reasonCode?: string;
}

export type DebitEvent = DebitRequestedEvent | DebitOutcomeEvent;

export interface BankChain {
  chainId: number;
  contract: Address;
  /** The bank's address, when a key is configured. */
  account?: Address;
  head(): Promise<bigint>;
  events(fromBlock: bigint, toBlock: bigint): Promise<DebitEvent[]>;
  tokenDecimals(token: Address): Promise<number>;
  debitStatus(debitId: bigint): Promise<DebitChainStatus>;
  confirm(debitId: bigint, token: Address, amount: bigint): Promise<Hex>;
  reportReturn(debitId: bigint, reasonCode: string): Promise<Hex>;
}

export interface BankChainOptions {
  rpcUrl: string;
  contract: Address;
  bankKey?: Hex;
}

export async function connectBankChain(options: BankChainOptions): Promise<BankChain> {
  let chain;
  try {
    chain = await chainFor(options.rpcUrl);
  } catch (error) {
    throw new ChainError(`cannot reach the chain at ${options.rpcUrl}`, {
      details: (error as Error).message,
      cause: error,
    });
  }
  const client = createPublicClient({ chain, transport: http(options.rpcUrl) }) as PublicClient;
  const abi: Abi = payPerUseAbi();
  const code = await client.getCode({ address: options.contract });
  if (!code || code === "0x") {
    throw new ChainError(`no contract at ${options.contract} on chain ${chain.id}`);
  }
  const account = options.bankKey ? privateKeyToAccount(options.bankKey) : undefined;
  const wallet = account
    ? createWalletClient({ account, chain, transport: http(options.rpcUrl) })
    : undefined;
  const decimals = new Map<Address, number>();

  async function send(address: Address, abiOf: Abi, functionName: string, args: unknown[]) {
    if (!wallet || !account) {
      throw new ChainError("the bank's key is not configured (BANK_PRIVATE_KEY or BANK_KEY_FILE)");
    }
    let request: unknown;
    try {
      ({ request } = await client.simulateContract({
        account,
        address,
        abi: withTokenErrors(abiOf),
        functionName,
        args,
      } as never));
    } catch (error) {
      throw new ChainError(
        `${functionName}(${args.map(String).join(", ")}) was refused: ${explainRevert(error, withTokenErrors(abiOf))}`,
        { cause: error },
      );
    }
    const hash = await wallet.writeContract(request as never);
    const receipt = await client.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new ChainError(`${functionName} reverted in ${hash}`);
    return hash;
  }

  return {
    chainId: chain.id,
    contract: options.contract,
    account: account?.address,
    head: () => client.getBlockNumber({ cacheTime: 0 }),
    async events(fromBlock, toBlock) {
      const logs = await client.getLogs({ address: options.contract, fromBlock, toBlock });
      const parsed = parseEventLogs({
        abi,
        logs,
        eventName: ["DirectDebitRequested", "DirectDebitCollected", "DirectDebitReturned"],
      }) as unknown as {
        eventName: string;
        args: Record<string, unknown>;
        blockNumber: bigint;
        transactionHash: Hex;
      }[];
      return parsed.map((log): DebitEvent => {
        const debitId = log.args.debitId as bigint;
        if (log.eventName === "DirectDebitRequested") {
          return {
            kind: "requested",
            debitId,
            agreementId: log.args.agreementId as bigint,
            mandateRef: log.args.mandateRef as Hex,
            token: log.args.token as Address,
            amount: log.args.amount as bigint,
            dueDate: log.args.dueDate as bigint,
            blockNumber: log.blockNumber,
            txHash: log.transactionHash,
          };
        }
        if (log.eventName === "DirectDebitCollected") {
          return { kind: "collected", debitId, blockNumber: log.blockNumber };
        }
        const code = Buffer.from((log.args.reasonCode as Hex).slice(2), "hex").toString("latin1");
        return { kind: "returned", debitId, blockNumber: log.blockNumber, reasonCode: code };
      });
    },
    async tokenDecimals(token) {
      let value = decimals.get(token);
      if (value === undefined) {
        value = Number(
          await client.readContract({ address: token, abi: erc20Abi, functionName: "decimals" }),
        );
        decimals.set(token, value);
      }
      return value;
    },
    async debitStatus(debitId) {
      const debit = (await client.readContract({
        address: options.contract,
        abi,
        functionName: "getDirectDebit",
        args: [debitId],
      })) as { status: number };
      return DEBIT_STATUS[debit.status] ?? "none";
    },
    async confirm(debitId, token, amount) {
      const owner = account?.address;
      if (owner) {
        const allowance = await client.readContract({
          address: token,
          abi: erc20Abi,
          functionName: "allowance",
          args: [owner, options.contract],
        });
        if (allowance < amount) {
          await send(token, erc20Abi as Abi, "approve", [options.contract, maxUint256]);
        }
      }
      return send(options.contract, abi, "confirmDirectDebit", [debitId]);
    },
    reportReturn(debitId, reasonCode) {
      return send(options.contract, abi, "reportDirectDebitReturn", [
        debitId,
        stringToHex(reasonCode, { size: 4 }),
      ]);
    },
  };
}
