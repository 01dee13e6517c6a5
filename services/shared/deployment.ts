/**
 * Deploys the contract suite with viem from the compiled artifacts, to any JSON-RPC endpoint.
 * The Ignition modules in deploy/ do the same for Hardhat users; this is what `npm start` and
 * `ppu deploy` use, so a deployment needs nothing but an RPC URL and a funded key.
 */
import {
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  type Address,
  type Chain,
  type Hex,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { loadArtifact, type Artifact } from "./artifacts.ts";

export interface DeploySuiteOptions {
  rpcUrl: string;
  deployerKey: Hex;
  /** Receives DEFAULT_ADMIN_ROLE; defaults to the deployer. */
  admin?: Address;
  /** Receives BANK_ROLE. */
  bank: Address;
  oracleSigners: Address[];
  threshold: number;
  /** Seconds between a direct-debit request and its earliest due date; default two days. */
  debitLeadTime?: bigint;
  /** An existing ERC-20 to settle in; when absent a local EURC-like token is deployed. */
  token?: Address;
  onProgress?: (message: string) => void;
}

export interface Deployment {
  chainId: number;
  payPerUse: Address;
  token: Address;
  deployBlock: bigint;
}

export async function chainFor(rpcUrl: string): Promise<Chain> {
  const probe = createPublicClient({ transport: http(rpcUrl) });
  const id = await probe.getChainId();
  return defineChain({
    id,
    name: `chain-${id}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
}

function linkedBytecode(artifact: Artifact, libraries: Record<string, Address>): Hex {
  let code = artifact.bytecode.slice(2);
  for (const [source, libs] of Object.entries(artifact.linkReferences ?? {})) {
    for (const [name, refs] of Object.entries(libs)) {
      const address = libraries[`${source}:${name}`] ?? libraries[name];
      if (!address) throw new Error(`library ${source}:${name} is not deployed`);
      for (const { start, length } of refs) {
        code =
          code.slice(0, start * 2) +
          address.slice(2).toLowerCase() +
          code.slice((start + length) * 2);
      }
    }
  }
  return `0x${code}`;
}

export async function deploySuite(options: DeploySuiteOptions): Promise<Deployment> {
  const chain = await chainFor(options.rpcUrl);
  const account = privateKeyToAccount(options.deployerKey);
  const wallet = createWalletClient({ account, chain, transport: http(options.rpcUrl) });
  const client = createPublicClient({ chain, transport: http(options.rpcUrl) });
  const progress = options.onProgress ?? (() => {});

  async function deploy(
    artifact: Artifact,
    args: unknown[],
    libraries: Record<string, Address> = {},
  ) {
    const hash = await wallet.deployContract({
      abi: artifact.abi,
      bytecode: linkedBytecode(artifact, libraries),
      args,
    } as Parameters<typeof wallet.deployContract>[0]);
    const receipt = await client.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success" || !receipt.contractAddress) {
      throw new Error(`deployment of ${artifact.contractName} failed in ${hash}`);
    }
    progress(`${artifact.contractName} deployed at ${receipt.contractAddress}`);
    return receipt;
  }

  const libraries: Record<string, Address> = {};
  const meter = loadArtifact("PayPerUse");
  for (const [source, libs] of Object.entries(meter.linkReferences ?? {})) {
    for (const name of Object.keys(libs)) {
      const receipt = await deploy(loadArtifact(name), []);
      libraries[`${source}:${name}`] = receipt.contractAddress!;
    }
  }

  let token = options.token;
  if (token === undefined) {
    const receipt = await deploy(
      loadArtifact("MockEURC"),
      localTokenArgs(loadArtifact("MockEURC"), account.address),
    );
    token = receipt.contractAddress!;
  }

  const receipt = await deploy(
    meter,
    [
      options.admin ?? account.address,
      options.bank,
      options.oracleSigners,
      options.threshold,
      options.debitLeadTime ?? 2n * 24n * 3600n,
    ],
    libraries,
  );
  return {
    chainId: chain.id,
    payPerUse: receipt.contractAddress!,
    token,
    deployBlock: receipt.blockNumber,
  };
}

/** Constructor arguments for the local EURC-like token, whatever its constructor declares. */
function localTokenArgs(artifact: Artifact, owner: Address): unknown[] {
  const constructor = artifact.abi.find((item) => item.type === "constructor");
  const inputs = constructor && "inputs" in constructor ? constructor.inputs : [];
  return inputs.map((input) => {
    if (input.type === "address") return owner;
    if (input.type === "string")
      return input.name?.toLowerCase().includes("symbol") ? "EURC" : "Euro Coin (local)";
    if (input.type.startsWith("uint")) return 0n;
    throw new Error(`cannot fill constructor argument ${input.name}: ${input.type}`);
  });
}
