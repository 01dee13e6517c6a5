/** `ppu api start`: the indexer and the HTTP API, with the settings in the environment. */
import type { Command } from "commander";
import { describeConfig } from "../shared/config.ts";
import { apiConfigSpec } from "./config.ts";

export function registerApiCommands(program: Command): void {
  const api = program
    .command("api")
    .description("indexer and HTTP API for owners, lessees, insurers and banks")
    .addHelpText(
      "after",
      `\nSettings (environment variables):\n${describeConfig(apiConfigSpec)}\n`,
    );
  api
    .command("start")
    .description("index the contract's events and serve the API (Ctrl-C stops it)")
    .addHelpText(
      "after",
      "\nExample:\n  $ RPC_URL=http://127.0.0.1:8545 CONTRACT_ADDRESS=0x… API_ADMIN_TOKEN=… PORT=8080 ppu api start\n  API listening on http://127.0.0.1:8080 (OpenAPI at http://127.0.0.1:8080/docs)\n",
    )
    .action(async () => {
      await import("./main.ts");
    });
}
