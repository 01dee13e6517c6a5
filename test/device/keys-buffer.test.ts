import { expect } from "chai";
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { bytesToHex } from "../../services/shared/eip712.ts";
import { verifyReadingSignature } from "../../services/shared/signatures.ts";
import { BufferCorruptError, loadBuffer, saveBuffer } from "../../services/device/buffer.ts";
import {
  DeviceKeyError,
  generateDeviceKey,
  loadDeviceKey,
  registrationData,
  saveDeviceKey,
} from "../../services/device/keys.ts";
import { Meter } from "../../services/device/meter.ts";
import { publicKeyOf } from "../../services/shared/signatures.ts";

const domain = {
  chainId: 31337n,
  verifyingContract: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
} as const;
const machineId = `0x${"ab".repeat(32)}` as const;

describe("device keys, meter and buffer", function () {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "ppu-device-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  for (const curve of ["p256", "secp256k1"] as const) {
    it(`round-trips a ${curve} key through a 0600 file and signs verifiable readings`, function () {
      const key = generateDeviceKey(curve);
      const path = join(dir, `${curve}.key`);
      saveDeviceKey(path, key);
      expect(statSync(path).mode & 0o777).to.equal(0o600);
      const loaded = loadDeviceKey(path);
      expect(publicKeyOf(loaded)).to.deep.equal(publicKeyOf(key));
      expect(() => saveDeviceKey(path, key)).to.throw(DeviceKeyError);
      const meter = new Meter({ machineId, key: loaded, domain, now: () => 1_700_000_000 });
      meter.add(7n, 42n);
      const message = meter.sign(7n);
      const result = verifyReadingSignature(
        domain,
        { agreementId: 7n, machineId, cumulativeUnits: 42n, timestamp: 1_700_000_000n },
        message.signature,
        publicKeyOf(key),
      );
      expect(result.ok).to.equal(true);
      const reg = registrationData(key, machineId);
      expect(reg.keyTypeCode).to.equal(curve === "p256" ? 2 : 1);
      expect(reg.x).to.match(/^0x[0-9a-f]{64}$/);
    });
  }

  it("refuses a key file readable by others", function () {
    const path = join(dir, "k.key");
    saveDeviceKey(path, generateDeviceKey("secp256k1"));
    chmodSync(path, 0o644);
    expect(() => loadDeviceKey(path)).to.throw(DeviceKeyError, /group or others/);
  });

  it("loads keys made outside our code: Node crypto P-256 PKCS#8 and SEC1 PEM, @noble/curves secp256k1", function () {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const pkcs8 = join(dir, "p.pem");
    const sec1 = join(dir, "s.pem");
    writeFileSync(pkcs8, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    writeFileSync(sec1, privateKey.export({ format: "pem", type: "sec1" }), { mode: 0o600 });
    expect(readFileSync(sec1, "utf8")).to.contain("EC PRIVATE KEY");
    const noble = join(dir, "n.key");
    writeFileSync(noble, bytesToHex(secp256k1.utils.randomSecretKey()), { mode: 0o600 });
    for (const path of [pkcs8, sec1, noble]) {
      const key = loadDeviceKey(path);
      const meter = new Meter({ machineId, key, domain, now: () => 5 });
      meter.add(1n, 3n);
      const m = meter.sign(1n);
      const reading = { agreementId: 1n, machineId, cumulativeUnits: 3n, timestamp: 5n };
      expect(verifyReadingSignature(domain, reading, m.signature, publicKeyOf(key)).ok).to.equal(
        true,
      );
    }
  });

  it("persists the meter across restarts, keeps the newest reading until settled", function () {
    const key = generateDeviceKey("p256");
    const path = join(dir, "buffer.json");
    const first = new Meter({ machineId, key, domain, bufferPath: path });
    for (let i = 0; i < 2000; i++) first.add(9n, 1n);
    first.sign(9n);
    const second = new Meter({ machineId, key, domain, bufferPath: path });
    expect(second.units(9n)).to.equal(2000n);
    for (let i = 0; i < 500; i++) second.add(9n, 2n);
    const reading = second.sign(9n);
    expect(reading.cumulativeUnits).to.equal("3000");
    second.markSettled(9n, 2000n);
    expect(second.pending(9n)?.cumulativeUnits).to.equal("3000");
    second.markSettled(9n, 3000n);
    expect(second.pending(9n)).to.equal(undefined);
    expect(new Meter({ machineId, key, domain, bufferPath: path }).units(9n)).to.equal(3000n);
  });

  it("reports corrupt, truncated and empty buffer files, never resets to zero", function () {
    const path = join(dir, "buffer.json");
    saveBuffer(path, { machineId, agreements: { "1": { cumulativeUnits: "12345" } } });
    expect(loadBuffer(path)?.agreements["1"]?.cumulativeUnits).to.equal("12345");
    const good = readFileSync(path, "utf8");
    writeFileSync(path, good.slice(0, good.length - 10));
    expect(() => loadBuffer(path)).to.throw(BufferCorruptError, /not valid JSON/);
    writeFileSync(path, good.replace("12345", "12346"));
    expect(() => loadBuffer(path)).to.throw(BufferCorruptError, /checksum/);
    writeFileSync(path, "");
    expect(() => loadBuffer(path)).to.throw(BufferCorruptError, /empty/);
    expect(
      () => new Meter({ machineId, key: generateDeviceKey("secp256k1"), domain, bufferPath: path }),
    ).to.throw(BufferCorruptError);
    expect(loadBuffer(join(dir, "missing.json"))).to.equal(undefined);
  });
});
