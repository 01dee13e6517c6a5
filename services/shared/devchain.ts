/**
 * The embedded chain: an in-process Hardhat network (EDR, hardfork osaka) served as JSON-RPC over
 * HTTP on 127.0.0.1, so that every service talks to it exactly as it would to a real node. Used
 * by `npm start` and by the tests; production points the services at a real RPC URL instead.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { network } from "hardhat";
import type { Hex } from "viem";
import { mnemonicToAccount } from "viem/accounts";
import { deploySuite, type Deployment } from "./deployment.ts";

/** Hardhat's well-known development mnemonic: its accounts are funded on the embedded chain. */
export const DEV_MNEMONIC = "test test test test test test test test test test test junk";

export interface DevAccount {
  address: Hex;
  privateKey: Hex;
}

export interface EthereumProviderLike {
  request(args: { method: string; params?: unknown[] | object }): Promise<unknown>;
}

export interface DevChain {
  rpcUrl: string;
  chainId: number;
  accounts: DevAccount[];
  provider: EthereumProviderLike;
  stop(): Promise<void>;
}

export interface DevChainOptions {
  /** Port for the JSON-RPC server; 0 (the default) picks a free one. */
  port?: number;
  host?: string;
  /** When set, blocks are also mined on this interval besides one per transaction. */
  blockTimeMs?: number;
  /** How many funded accounts to derive (the network funds 20). */
  accountCount?: number;
  /**
   * Blocks take the wall clock's time even when several are mined within one second. Without it
   * every block advances the chain's clock by at least a second, so thousands of quick transactions
   * (registering a large fleet) put the chain minutes ahead of the machines' clocks.
   */
  wallClockBlocks?: boolean;
  /** The chain's clock at its first block (default: now). */
  initialDate?: Date;
}

export function devAccounts(count = 20): DevAccount[] {
  return Array.from({ length: count }, (_, addressIndex) => {
    const account = mnemonicToAccount(DEV_MNEMONIC, { addressIndex });
    const privateKey = account.getHdKey().privateKey;
    if (!privateKey) throw new Error("HD key without private key");
    return {
      address: account.address,
      privateKey: `0x${Buffer.from(privateKey).toString("hex")}` as Hex,
    };
  });
}

interface JsonRpcRequest {
  jsonrpc?: string;
  id?: string | number | null;
  method?: unknown;
  params?: unknown;
}

async function answer(provider: EthereumProviderLike, request: JsonRpcRequest): Promise<object> {
  const id = request.id ?? null;
  if (typeof request.method !== "string") {
    return { jsonrpc: "2.0", id, error: { code: -32600, message: "Invalid request" } };
  }
  try {
    const result = await provider.request({
      method: request.method,
      params: (request.params as unknown[] | undefined) ?? [],
    });
    return { jsonrpc: "2.0", id, result: result ?? null };
  } catch (error) {
    const e = error as { code?: number; message?: string; data?: unknown };
    return {
      jsonrpc: "2.0",
      id,
      error: {
        code: typeof e.code === "number" ? e.code : -32603,
        message: e.message ?? String(error),
        ...(e.data !== undefined ? { data: e.data } : {}),
      },
    };
  }
}

function readBody(req: IncomingMessage, limit = 50 * 1024 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error("request body too large"));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** Serves an EIP-1193 provider as HTTP JSON-RPC (single and batch requests). */
export function serveJsonRpc(provider: EthereumProviderLike): Server {
  return createServer(async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== "POST") {
      res.writeHead(405, { allow: "POST" }).end();
      return;
    }
    let payload: unknown;
    try {
      payload = JSON.parse(await readBody(req));
    } catch {
      res.writeHead(400, { "content-type": "application/json" }).end(
        JSON.stringify({
          jsonrpc: "2.0",
          id: null,
          error: { code: -32700, message: "Parse error" },
        }),
      );
      return;
    }
    const body = Array.isArray(payload)
      ? await Promise.all(payload.map((item) => answer(provider, item as JsonRpcRequest)))
      : await answer(provider, payload as JsonRpcRequest);
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(
        JSON.stringify(body, (_key, value) =>
          typeof value === "bigint" ? `0x${value.toString(16)}` : value,
        ),
      );
  });
}

/** Starts an in-process Hardhat network and serves it on 127.0.0.1. */
export async function startDevChain(options: DevChainOptions = {}): Promise<DevChain> {
  const connection = await network.create({
    override: {
      hardfork: "osaka",
      ...(options.wallClockBlocks ? { allowBlocksWithSameTimestamp: true } : {}),
      ...(options.initialDate ? { initialDate: options.initialDate } : {}),
    },
  });
  const provider = connection.provider as EthereumProviderLike;
  if (options.blockTimeMs !== undefined && options.blockTimeMs > 0) {
    await provider.request({ method: "evm_setIntervalMining", params: [options.blockTimeMs] });
  }
  const chainId = Number(BigInt((await provider.request({ method: "eth_chainId" })) as string));
  const server = serveJsonRpc(provider);
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let stopped = false;
  return {
    rpcUrl: `http://${host}:${port}`,
    chainId,
    accounts: devAccounts(options.accountCount ?? 20),
    provider,
    async stop() {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await connection.close();
    },
  };
}

/** The development accounts by role, as every embedded system uses them. */
export interface DevRoles {
  deployer: DevAccount;
  bank: DevAccount;
  owner: DevAccount;
  lessee: DevAccount;
  oracleSigner: DevAccount;
}

export interface EmbeddedDeployment {
  chain: DevChain;
  deployment: Deployment;
  roles: DevRoles;
}

/**
 * An embedded chain with the contracts deployed by the first development account: the second holds
 * the bank role, the fifth is the only oracle signer (threshold 1); the third and fourth are the
 * machine owner and the lessee. `npm start`, the fleet simulator and the tests start from here.
 */
export async function startEmbeddedDeployment(
  options: DevChainOptions & { onProgress?: (message: string) => void } = {},
): Promise<EmbeddedDeployment> {
  const { onProgress, ...chainOptions } = options;
  const chain = await startDevChain(chainOptions);
  onProgress?.(`chain ${chain.chainId} serving JSON-RPC at ${chain.rpcUrl}`);
  const [deployer, bank, owner, lessee, oracleSigner] = chain.accounts as [
    DevAccount,
    DevAccount,
    DevAccount,
    DevAccount,
    DevAccount,
  ];
  try {
    const deployment = await deploySuite({
      rpcUrl: chain.rpcUrl,
      deployerKey: deployer.privateKey,
      bank: bank.address,
      oracleSigners: [oracleSigner.address],
      threshold: 1,
      ...(onProgress ? { onProgress } : {}),
    });
    return { chain, deployment, roles: { deployer, bank, owner, lessee, oracleSigner } };
  } catch (error) {
    await chain.stop();
    throw error;
  }
}

export { deploySuite, type DeploySuiteOptions, type Deployment } from "./deployment.ts";
