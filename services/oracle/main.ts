/**
 * Runs the oracle from the environment (see `ppu oracle start --help` or docs/oracle.md).
 * SIGINT/SIGTERM stop it gracefully; a second signal forces exit.
 */
import { describeConfig } from "../shared/config.ts";
import { PpuError } from "../shared/errors.ts";
import { loadOracleConfig, oracleConfigSpec } from "./config.ts";
import { createOracle } from "./service.ts";

if (process.argv.includes("--help")) {
  console.log(
    `Usage: tsx services/oracle/main.ts\n\nSettings (environment variables):\n${describeConfig(oracleConfigSpec)}`,
  );
  process.exit(0);
}

try {
  const oracle = createOracle(loadOracleConfig());
  await oracle.start();
  console.log(`oracle listening on ${oracle.brokerUrl}`);
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) {
      console.error(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    console.error(`${signal}: finishing the readings in hand, then stopping (again to force)`);
    oracle.stop().then(
      () => process.exit(0),
      (error) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
} catch (error) {
  console.error(error instanceof PpuError ? error.message : error);
  process.exit(1);
}
