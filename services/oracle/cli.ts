/**
 * `ppu oracle …`: the oracle's key file. The password is read from ORACLE_KEYSTORE_PASSWORD or from
 * `--password-file`, never from the command line, where other users and the shell history see it.
 */
import type { Command } from "commander";
import { describeConfig } from "../shared/config.ts";
import { oracleConfigSpec } from "./config.ts";
import { KeystoreError, createKeystore, readKeyFile, readPasswordFile } from "./keystore.ts";

const KEYSTORE_HELP = `
The key file is Web3 Secret Storage JSON (version 3, scrypt), written with mode 0600; an existing
file is never overwritten. Start the oracle with ORACLE_KEYSTORE=<file> and the same password in
ORACLE_KEYSTORE_PASSWORD or ORACLE_KEYSTORE_PASSWORD_FILE.

Examples:
  # a fresh key; the password from a file
  $ ppu oracle keystore create --out oracle.json --password-file /run/secrets/oracle-password

  # encrypt an existing hex key (then delete the plain copy); the password typed, not echoed
  $ read -rs ORACLE_KEYSTORE_PASSWORD && export ORACLE_KEYSTORE_PASSWORD
  $ ppu oracle keystore create --out oracle.json --key-file oracle.key
`;

export function registerOracleCommands(program: Command): void {
  const oracle = program
    .command("oracle")
    .description("oracle service: run it, and its encrypted key file")
    .addHelpText(
      "after",
      `\nSettings of the service (environment variables):\n${describeConfig(oracleConfigSpec)}\n`,
    );
  oracle
    .command("start")
    .description("run the oracle with the settings in the environment (Ctrl-C stops it gracefully)")
    .addHelpText(
      "after",
      "\nExample:\n  $ RPC_URL=http://127.0.0.1:8545 CONTRACT_ADDRESS=0x… ORACLE_KEYSTORE=oracle.json \\\n    ORACLE_KEYSTORE_PASSWORD_FILE=/run/secrets/pw MQTT_URL=mqtt://broker:1883 ppu oracle start\n",
    )
    .action(async () => {
      await import("./main.ts");
    });
  const keystore = oracle.command("keystore").description("encrypted key file of an oracle");
  keystore
    .command("create")
    .description(
      "create an encrypted key file (a fresh key, or one imported) and print its address",
    )
    .requiredOption("--out <file>", "the key file to write; must not exist")
    .option("--key-file <file>", "import this hex key (0x…) instead of creating a fresh one")
    .option("--password-file <file>", "read the password from this file (its first line)")
    .addHelpText("after", KEYSTORE_HELP)
    .action(async (opts: { out: string; keyFile?: string; passwordFile?: string }) => {
      const fromEnv = process.env.ORACLE_KEYSTORE_PASSWORD;
      if (opts.passwordFile && fromEnv) {
        throw new KeystoreError(
          "The password is given twice: ORACLE_KEYSTORE_PASSWORD and --password-file; keep one",
        );
      }
      const password = opts.passwordFile ? readPasswordFile(opts.passwordFile) : fromEnv;
      if (!password) {
        throw new KeystoreError(
          "No password: set ORACLE_KEYSTORE_PASSWORD or pass --password-file <file>",
        );
      }
      const privateKey = opts.keyFile ? readKeyFile(opts.keyFile) : undefined;
      const { address } = await createKeystore({ out: opts.out, password, privateKey });
      process.stdout.write(
        `wrote ${opts.out} (${privateKey ? "imported key" : "new key"})\naddress ${address}\n`,
      );
    });
}
