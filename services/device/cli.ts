/** `ppu device …` commands: create and inspect device keys. */
import type { Command } from "commander";
import type { Hex } from "viem";
import { generateDeviceKey, loadDeviceKey, registrationData, saveDeviceKey } from "./keys.ts";

export function registerDeviceCommands(program: Command): void {
  const device = program.command("device").description("machine side: device keys");
  device
    .command("keygen")
    .description("create a device key in a new owner-only (0600) file")
    .requiredOption("--curve <curve>", "p256 (PKCS#8 PEM) or secp256k1 (hex)")
    .requiredOption("--out <file>", "key file to create (never overwritten)")
    .addHelpText("after", "\nExample:\n  $ ppu device keygen --curve p256 --out machine-1.pem")
    .action((options: { curve: string; out: string }) => {
      if (options.curve !== "p256" && options.curve !== "secp256k1") {
        throw new Error(`--curve must be p256 or secp256k1, not ${options.curve}`);
      }
      const key = generateDeviceKey(options.curve);
      saveDeviceKey(options.out, key);
      console.log(`wrote ${options.out} (${options.curve}, mode 0600)`);
    });
  device
    .command("info")
    .description("print the public key and the registration data (DeviceKey tuple) of a key file")
    .requiredOption("--key <file>", "key file (P-256 PEM or secp256k1 hex)")
    .option("--machine-id <bytes32>", "machine id to include", `0x${"00".repeat(32)}`)
    .addHelpText("after", "\nExample:\n  $ ppu device info --key machine-1.pem --machine-id 0x…")
    .action((options: { key: string; machineId: string }) => {
      const data = registrationData(loadDeviceKey(options.key), options.machineId as Hex);
      console.log(JSON.stringify(data, null, 2));
    });
}
