/**
 * Service ports (docs/service-ports.rst): the apps an image declares in its
 * `ai.backend.service-ports` label (`io.sorna.service-ports` is read too),
 * checked once so that a bad label refuses a create before anything is
 * taken, and the host port of each in a kernel's info.
 */
import { KernelCreationError } from '../errors.js';
import type { ServicePort } from '../rpc/results.js';

/** One app an image declares: `name:protocol:port`. */
export interface ServiceDecl {
  name: string;
  protocol: 'tcp' | 'pty' | 'http';
  port: number;
}

/** The label keys, the `ai.backend.` one first (it wins). */
export const SERVICE_PORTS_LABELS = ['ai.backend.service-ports', 'io.sorna.service-ports'] as const;

/** What an image's labels declare, or why they cannot be used. */
export type ServiceDecls = { ok: true; services: ServiceDecl[] } | { ok: false; error: string };

/** Reads and checks the service-port label of an image; an absent or empty label declares none. */
export function parseServicePorts(labels: Record<string, string>): ServiceDecls {
  const key = SERVICE_PORTS_LABELS.find((k) => labels[k] !== undefined);
  const raw = key ? labels[key]!.trim() : '';
  if (!key || raw === '') return { ok: true, services: [] };
  const services: ServiceDecl[] = [];
  const bad = (why: string): ServiceDecls => ({
    ok: false,
    error: `the image label ${key}=${JSON.stringify(raw)} is invalid: ${why} (expected name:protocol:port, comma-separated)`,
  });
  for (const item of raw.split(',')) {
    const parts = item.trim().split(':');
    if (parts.length !== 3) return bad(`${JSON.stringify(item.trim())} is not name:protocol:port`);
    const [name, protocol, portText] = parts as [string, string, string];
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name))
      return bad(`${JSON.stringify(name)} is not a service name (letters, digits, "_", "." and "-")`);
    if (protocol !== 'tcp' && protocol !== 'pty' && protocol !== 'http')
      return bad(`protocol ${JSON.stringify(protocol)} of ${name} is not tcp, pty or http`);
    const port = Number(portText);
    if (!/^\d{1,5}$/.test(portText) || port <= 1024 || port > 65535)
      return bad(`port ${JSON.stringify(portText)} of ${name} is not an integer in 1025..65535`);
    if (port >= 2000 && port <= 2003) return bad(`port ${port} of ${name} is one of the runner's ports 2000-2003`);
    if (services.some((s) => s.name === name)) return bad(`the name ${name} appears twice`);
    if (services.some((s) => s.port === port)) return bad(`the port ${port} appears twice`);
    services.push({ name, protocol, port });
  }
  return { ok: true, services };
}

/** The service ports of a kernel's info: each declared app with the host port its container port is published on. */
export function servicePortsInfo(services: ServiceDecl[], hostPorts: Partial<Record<number, number>>): ServicePort[] {
  return services.flatMap((s) => {
    const host = hostPorts[s.port];
    return host ? [{ name: s.name, protocol: s.protocol, container_port: s.port, host_port: host }] : [];
  });
}

/** A create (or restart, or a pooled container) on an image whose service-port label is bad is refused, naming the label. */
export function refuseBadServiceLabel(traits: { services: ServiceDecls }, image: string): void {
  if (!traits.services.ok) throw new KernelCreationError(`cannot create a kernel of ${image}: ${traits.services.error}; nothing was taken`);
}

/** The service ports of a kernel's info from its image's apps and its container's published ports. */
export function servicePortsOf(traits: { services: ServiceDecls }, published: Partial<Record<number, number>>): ServicePort[] {
  return servicePortsInfo(traits.services.ok ? traits.services.services : [], published);
}
