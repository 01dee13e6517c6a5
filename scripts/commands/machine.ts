/** `ppu machine …`: register a machine, rotate or revoke its device key, transfer it, show it. */
import type { Command } from "commander";
import type { Address, Hex } from "viem";
import { loadDeviceKey, registrationData } from "../../services/device/keys.ts";
import {
  KEY_TYPES,
  TRUST_MODES,
  ZERO32,
  addressArg,
  connect,
  connectionOptions,
  eventsOf,
  fail,
  machineIdArg,
  print,
  printJson,
  wholeNumberArg,
  type ConnectionOptions,
  type MachineView,
} from "./common.ts";

interface MachineOptions extends ConnectionOptions {
  id: Hex;
  deviceKey?: string;
  attested?: boolean;
  payout?: Address;
  maxUnitsPerHour?: bigint;
  to?: Address;
  json?: boolean;
}

/** The on-chain DeviceKey tuple of a device key file (only its public part is read out). */
function deviceKeyTuple(file: string, machineId: Hex) {
  const data = registrationData(loadDeviceKey(file), machineId);
  return { tuple: { keyType: data.keyTypeCode, x: data.x, y: data.y }, data };
}

function describeKey(data: ReturnType<typeof registrationData>): string {
  return data.publicKey.keyType === "secp256k1"
    ? `secp256k1 key of address ${data.publicKey.address}`
    : `P-256 key x=${data.x} y=${data.y}`;
}

export function printMachine(machineId: Hex, m: MachineView): void {
  print(`machine ${machineId}`);
  print(`  owner              ${m.owner}`);
  print(`  payout             ${m.payout}`);
  print(`  trust mode         ${TRUST_MODES[m.trustMode] ?? m.trustMode}`);
  print(`  device key         ${KEY_TYPES[m.keyType] ?? m.keyType}, version ${m.keyVersion}`);
  if (m.keyType !== 0) {
    print(`  key x              ${m.keyX}`);
    if (m.keyY !== ZERO32) print(`  key y              ${m.keyY}`);
  }
  print(
    `  max units per hour ${m.maxUnitsPerHour === 0n ? "not declared" : m.maxUnitsPerHour.toString()}`,
  );
  print(`  tariff versions    ${m.tariffCount}`);
}

export function registerMachineCommands(program: Command): void {
  const machine = program
    .command("machine")
    .description("machines: register, rotate or revoke the device key, transfer, show")
    .addHelpText(
      "after",
      "\nA machine id is 32 bytes of hex, or a name whose keccak256 is the id (--id press-1).\n" +
        "Connection: --rpc/RPC_URL, --contract/CONTRACT_ADDRESS; the owner's key from --key-file/PPU_KEY_FILE.\n" +
        "\nExample:\n  $ ppu machine register --id press-1 --device-key press-1.pem --payout 0x7099…",
    );

  connectionOptions(
    machine
      .command("register")
      .description("register a machine owned by the sending account")
      .requiredOption("--id <bytes32|name>", "machine id, or a name hashed into one", machineIdArg)
      .option("--device-key <file>", "the machine's device key (from ppu device keygen)")
      .option("--attested", "readings are attested by the oracles; no device key needed")
      .requiredOption(
        "--payout <address>",
        "address the machine's earnings are paid to",
        addressArg,
      )
      .option(
        "--max-units-per-hour <n>",
        "declared top metering rate; the oracle refuses faster meters (default 0: not declared)",
        wholeNumberArg,
      )
      .addHelpText(
        "after",
        "\nOnly the public part of the device key is read out and registered.\n" +
          "\nExamples:\n" +
          "  $ ppu device keygen --curve p256 --out press-1.pem\n" +
          "  $ PPU_KEY_FILE=owner.key ppu machine register --id press-1 --device-key press-1.pem \\\n" +
          "      --payout 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --max-units-per-hour 50000\n" +
          "  $ ppu machine register --id 0x3f…e1 --attested --payout 0x7099…",
      ),
    { signer: true },
  ).action(async (o: MachineOptions, command: Command) => {
    if (!o.deviceKey && !o.attested)
      fail("Give the machine's --device-key FILE, or --attested for an oracle-attested machine.");
    if ((o.maxUnitsPerHour ?? 0n) >= 2n ** 64n) fail("--max-units-per-hour must be below 2^64.");
    const key = o.deviceKey ? deviceKeyTuple(o.deviceKey, o.id) : undefined;
    const ppu = await connect(command, o, { signer: true });
    const existing = await ppu.read<MachineView>("getMachine", [o.id]);
    if (existing.owner !== "0x0000000000000000000000000000000000000000")
      fail(`Machine ${o.id} is already registered, owned by ${existing.owner}.`);
    const receipt = await ppu.send("registerMachine", [
      o.id,
      o.payout,
      o.attested ? 1 : 0,
      o.maxUnitsPerHour ?? 0n,
      key?.tuple ?? { keyType: 0, x: ZERO32, y: ZERO32 },
    ]);
    const [event] = eventsOf<{ machineId: Hex; owner: Address }>(ppu, receipt, "MachineRegistered");
    print(`registered machine ${event?.machineId ?? o.id}`);
    print(`  owner ${event?.owner ?? ppu.sender().address}, payout ${o.payout}`);
    print(
      `  ${o.attested ? "oracle-attested" : "device-signed"}${key ? `, ${describeKey(key.data)}` : ", no device key"}`,
    );
  });

  connectionOptions(
    machine
      .command("rotate-key")
      .description("replace the device key; only readings signed by the new key count")
      .requiredOption("--id <bytes32|name>", "machine id or name", machineIdArg)
      .requiredOption("--device-key <file>", "the new device key (from ppu device keygen)")
      .addHelpText(
        "after",
        "\nExample:\n  $ ppu machine rotate-key --id press-1 --device-key press-1-2027.pem",
      ),
    { signer: true },
  ).action(async (o: MachineOptions, command: Command) => {
    const key = deviceKeyTuple(o.deviceKey!, o.id);
    const ppu = await connect(command, o, { signer: true });
    await ppu.machine(o.id);
    const receipt = await ppu.send("rotateDeviceKey", [o.id, key.tuple]);
    const [event] = eventsOf<{ keyVersion: number }>(ppu, receipt, "DeviceKeyRotated");
    print(
      `rotated the device key of machine ${o.id}: version ${event?.keyVersion ?? "?"}, ${describeKey(key.data)}`,
    );
  });

  connectionOptions(
    machine
      .command("revoke-key")
      .description("revoke the device key; the machine's readings are refused until a rotation")
      .requiredOption("--id <bytes32|name>", "machine id or name", machineIdArg)
      .addHelpText("after", "\nExample:\n  $ ppu machine revoke-key --id press-1"),
    { signer: true },
  ).action(async (o: MachineOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: true });
    await ppu.machine(o.id);
    const receipt = await ppu.send("revokeDeviceKey", [o.id]);
    const [event] = eventsOf<{ keyVersion: number }>(ppu, receipt, "DeviceKeyRevoked");
    print(
      `revoked device key version ${event?.keyVersion ?? "?"} of machine ${o.id}; its readings are refused until a rotate-key`,
    );
  });

  connectionOptions(
    machine
      .command("transfer")
      .description("transfer the machine to a new owner (the payout address stays)")
      .requiredOption("--id <bytes32|name>", "machine id or name", machineIdArg)
      .requiredOption("--to <address>", "the new owner", addressArg)
      .addHelpText(
        "after",
        "\nSettle the machine's agreements first: earnings are paid to the payout address current at\n" +
          "settlement, which the transfer leaves unchanged.\n" +
          "\nExample:\n  $ ppu machine transfer --id press-1 --to 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
      ),
    { signer: true },
  ).action(async (o: MachineOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: true });
    const before = await ppu.machine(o.id);
    await ppu.send("transferMachine", [o.id, o.to]);
    print(`transferred machine ${o.id} from ${before.owner} to ${o.to}`);
    print(`  payout unchanged: ${before.payout}`);
  });

  connectionOptions(
    machine
      .command("show")
      .description("show a machine: owner, payout, trust mode, device key, tariff versions")
      .requiredOption("--id <bytes32|name>", "machine id or name", machineIdArg)
      .option("--json", "print JSON")
      .addHelpText("after", "\nExample:\n  $ ppu machine show --id press-1"),
    { signer: false },
  ).action(async (o: MachineOptions, command: Command) => {
    const ppu = await connect(command, o, { signer: false });
    const m = await ppu.machine(o.id);
    if (o.json)
      printJson({
        machineId: o.id,
        ...m,
        trustMode: TRUST_MODES[m.trustMode],
        keyType: KEY_TYPES[m.keyType],
      });
    else printMachine(o.id, m);
  });
}
