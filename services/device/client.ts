/**
 * The SDK's machine object: meters usage, signs cumulative readings, and carries the newest one
 * per agreement to the oracle over MQTT 5 (QoS 1, persistent session) whenever it is connected,
 * until the oracle's retained status says it is settled. Obeys the status topic: an agreement
 * that is suspended, exhausted, ended or over its cap is no longer served. Works fully offline:
 * the meter keeps counting and persisting while the broker is unreachable.
 */
import { EventEmitter } from "node:events";
import mqtt, { type MqttClient } from "mqtt";
import {
  STOP_STATES,
  STATUS_STATES,
  readingsTopic,
  statusTopic,
  type ReadingMessage,
  type StatusMessage,
} from "../shared/protocol.ts";
import { Meter, type MeterOptions } from "./meter.ts";

export interface DeviceClientOptions extends MeterOptions {
  /** Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883. */
  brokerUrl: string;
  username?: string;
  password?: string;
  /** How often the newest unsettled readings are re-signed and published, in ms. */
  publishIntervalMs?: number;
  reconnectPeriodMs?: number;
  /**
   * MQTT protocol: 5 (default; session expiry keeps QoS 1 state across reconnects) or 4 for
   * MQTT 3.1.1 brokers such as the embedded aedes broker (clean session false).
   */
  protocolVersion?: 4 | 5;
}

export interface DeviceClientEvents {
  connected: [];
  offline: [];
  published: [ReadingMessage];
  settled: [agreementId: bigint, cumulativeUnits: bigint];
  stopped: [agreementId: bigint, state: StatusMessage["state"]];
  lowBalance: [StatusMessage];
  rejected: [StatusMessage];
  status: [StatusMessage];
}

export class DeviceClient extends EventEmitter<DeviceClientEvents> {
  readonly meter: Meter;
  private readonly options: DeviceClientOptions;
  private client?: MqttClient;
  private timer?: NodeJS.Timeout;
  private readonly stoppedAgreements = new Map<string, StatusMessage["state"]>();

  constructor(options: DeviceClientOptions) {
    super();
    this.options = options;
    this.meter = new Meter(options);
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Whether the machine may still serve an agreement. */
  serving(agreementId: bigint): boolean {
    return !this.stoppedAgreements.has(agreementId.toString());
  }

  /** Records usage (persisted at once, online or not). Refused for an agreement no longer served. */
  record(agreementId: bigint, units: bigint): bigint {
    const state = this.stoppedAgreements.get(agreementId.toString());
    if (state) throw new Error(`agreement ${agreementId} is ${state}: not serving`);
    return this.meter.add(agreementId, units);
  }

  start(): void {
    const machineId = this.meter.machineId;
    const protocolVersion = this.options.protocolVersion ?? 5;
    this.client = mqtt.connect(this.options.brokerUrl, {
      protocolVersion,
      clientId: `ppu-device-${machineId.slice(2, 34)}`,
      clean: false,
      ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 86_400 } } : {}),
      reconnectPeriod: this.options.reconnectPeriodMs ?? 1000,
      connectTimeout: 5000,
      username: this.options.username,
      password: this.options.password,
    });
    this.client.on("connect", () => {
      this.client?.subscribe(statusTopic(machineId), { qos: 1 });
      this.emit("connected");
      this.flush();
    });
    this.client.on("offline", () => this.emit("offline"));
    this.client.on("error", () => {
      // Connection errors are retried by the reconnect loop; the meter keeps counting meanwhile.
    });
    this.client.on("message", (_topic, payload) => this.onStatus(payload));
    this.timer = setInterval(() => this.flush(), this.options.publishIntervalMs ?? 5000);
    this.timer.unref();
  }

  /** Signs the current total of every agreement that has unsettled usage and publishes it. */
  flush(): void {
    for (const agreementId of this.meter.agreementIds()) {
      const units = this.meter.units(agreementId);
      const pending = this.meter.pending(agreementId);
      const reading =
        pending && BigInt(pending.cumulativeUnits) === units
          ? pending
          : this.signIfUnsettled(agreementId, units);
      if (!reading || !this.client?.connected) continue;
      this.client.publish(
        readingsTopic(this.meter.machineId),
        JSON.stringify(reading),
        { qos: 1 },
        (error) => {
          if (!error) this.emit("published", reading);
        },
      );
    }
  }

  private signIfUnsettled(agreementId: bigint, units: bigint): ReadingMessage | undefined {
    if (units === 0n) return undefined;
    const reading = this.meter.sign(agreementId);
    return this.meter.pending(agreementId) ? reading : undefined;
  }

  private onStatus(payload: Buffer): void {
    let status: StatusMessage;
    try {
      status = JSON.parse(payload.toString("utf8")) as StatusMessage;
    } catch {
      return;
    }
    if (!STATUS_STATES.includes(status.state) || !/^\d+$/.test(status.agreementId ?? "")) return;
    const agreementId = BigInt(status.agreementId);
    this.emit("status", status);
    if (
      status.state === "settled" &&
      status.cumulativeUnits &&
      /^\d+$/.test(status.cumulativeUnits)
    ) {
      this.meter.markSettled(agreementId, BigInt(status.cumulativeUnits));
      this.emit("settled", agreementId, BigInt(status.cumulativeUnits));
    } else if (status.state === "low_balance") {
      this.emit("lowBalance", status);
    } else if (status.state === "rejected") {
      this.emit("rejected", status);
    }
    if (STOP_STATES.has(status.state) && !this.stoppedAgreements.has(status.agreementId)) {
      this.stoppedAgreements.set(status.agreementId, status.state);
      this.emit("stopped", agreementId, status.state);
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.client?.endAsync();
  }
}
