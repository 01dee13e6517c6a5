import type { Command } from "commander";
import { getAddress, isHex, type Address, type Hex } from "viem";
import { deploySuite } from "../../services/shared/deployment.ts";

export function registerDeployCommand(program: Command): void {
  program
    .command("deploy")
    .description("Deploy PayPerUse (and a local EURC-like token unless --token is given)")
    .requiredOption("--rpc <url>", "JSON-RPC endpoint", process.env.RPC_URL)
    .option("--key <hex>", "deployer private key (or DEPLOYER_KEY)")
    .requiredOption("--bank <address>", "account receiving the bank role")
    .requiredOption("--oracle <addresses>", "comma-separated oracle signer addresses")
    .option("--threshold <n>", "oracle signatures required", "1")
    .option("--token <address>", "existing ERC-20 to settle in")
    .addHelpText(
      "after",
      "\nExample:\n  $ ppu deploy --rpc http://127.0.0.1:8545 --key 0xac09… --bank 0x7099… --oracle 0x3C44…",
    )
    .action(async (opts: Record<string, string | undefined>) => {
      // Read from the environment only here, so that --help never prints a key.
      const key = opts.key ?? process.env.DEPLOYER_KEY;
      if (!key || !isHex(key))
        throw new Error("A deployer key is required: --key 0x… or DEPLOYER_KEY.");
      const deployment = await deploySuite({
        rpcUrl: opts.rpc as string,
        deployerKey: key as Hex,
        bank: getAddress(opts.bank as string),
        oracleSigners: (opts.oracle as string)
          .split(",")
          .map((a) => getAddress(a.trim()) as Address),
        threshold: Number(opts.threshold),
        token: opts.token ? getAddress(opts.token) : undefined,
        onProgress: (message) => process.stderr.write(`… ${message}\n`),
      });
      process.stdout.write(
        `${JSON.stringify({ ...deployment, deployBlock: deployment.deployBlock.toString() }, null, 2)}\n`,
      );
    });
}
