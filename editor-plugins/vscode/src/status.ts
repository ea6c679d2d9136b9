// Who is in the session and what the shared run is doing, and the one line
// of status bar text made from it. No `vscode` import: unit-tested in node.

import type { ConnectionParams, Participant, PresenceParams, RunFinishedParams, RunStartedParams } from './protocol';

export interface RunState {
  id: number;
  running: boolean;
  summary?: string;
}

export class SessionState {
  session: string | undefined;
  /** False while the proxy is starting or after it died. */
  connected = false;
  /** Other people by hub client id. */
  readonly people = new Map<number, Participant>();
  following: string | undefined;
  run: RunState | undefined;
  /** The proxy's link to the hub, from chorus/connection. */
  hub: ConnectionParams['state'] | undefined;
  readOnly = false;
  /** Our id at the hub while online; a reconnect brings a new one. */
  clientId: number | undefined;

  /** Applies chorus/connection; returns a line worth telling the user, if any. */
  onConnection(params: ConnectionParams): string | undefined {
    const was = this.hub;
    this.hub = params.state;
    if (params.state === 'online') {
      this.readOnly = params.role === 'readOnly';
      this.clientId = params.clientId;
      return was === 'offline' ? 'back online' : undefined;
    }
    if (params.state === 'offline') {
      return 'offline: your edits are kept and shared when the hub is back';
    }
    return `the hub refused to let you in${params.reason ? `: ${params.reason}` : ''}`;
  }

  /** Applies chorus/presence; returns a line worth telling the user, if any. */
  onPresence(params: PresenceParams): string | undefined {
    if (params.event === 'joined' && params.participant) {
      this.people.set(params.participant.clientId, params.participant);
      return `${params.participant.name} joined`;
    }
    if (params.event === 'left') {
      const known = this.people.get(params.clientId);
      this.people.delete(params.clientId);
      if (this.following !== undefined && known?.name === this.following) {
        this.following = undefined;
      }
      return `${params.name ?? known?.name ?? 'someone'} left`;
    }
    return undefined;
  }

  /**
   * A cursor proves presence: after a reconnect the cursor can come before
   * the presence that names its owner, and the status must not undercount.
   */
  onCursorFrom(clientId: number, name: string): void {
    if (!this.people.has(clientId)) {
      this.people.set(clientId, { clientId, name });
    }
  }

  onRunStarted(params: RunStartedParams): void {
    this.run = { id: params.runId, running: true };
  }

  onRunFinished(params: RunFinishedParams): void {
    this.run = { id: params.runId, running: false, summary: params.summary ?? 'finished' };
  }

  /** Names of the other people, sorted, each once. */
  names(): string[] {
    return [...new Set([...this.people.values()].map((p) => p.name))].sort();
  }

  reset(): void {
    this.session = undefined;
    this.connected = false;
    this.people.clear();
    this.following = undefined;
    this.run = undefined;
    this.hub = undefined;
    this.readOnly = false;
    this.clientId = undefined;
  }
}

/** Status bar text: "$(broadcast) demo · 2 people · running #3". */
export function statusText(state: SessionState): string {
  if (state.session === undefined) {
    return '$(broadcast) Chorus';
  }
  const parts = [`$(broadcast) ${state.session}`];
  const count = state.people.size + 1;
  parts.push(`${count} ${count === 1 ? 'person' : 'people'}`);
  if (state.following !== undefined) {
    parts.push(`following ${state.following}`);
  }
  if (state.run) {
    parts.push(
      state.run.running ? `running #${state.run.id}` : `run #${state.run.id}: ${state.run.summary ?? 'finished'}`,
    );
  }
  if (state.readOnly) {
    parts.push('read-only');
  }
  if (state.hub === 'refused') {
    parts.push('refused');
  } else if (!state.connected || state.hub === 'offline') {
    parts.push('offline');
  }
  return parts.join(' · ');
}

/** Status bar tooltip: who is here, one per line. */
export function statusTooltip(state: SessionState, myName: string): string {
  if (state.session === undefined) {
    return 'Chorus: not in a session (click to join)';
  }
  return whoLines(state, myName).join('\n');
}

/** The answer to "Chorus: Who". */
export function whoLines(state: SessionState, myName: string): string[] {
  if (state.session === undefined) {
    return ['not in a session'];
  }
  const lines = [`session ${state.session} · you: ${myName === '' ? '(default name)' : myName}`];
  const people = [...state.people.values()].sort((a, b) => a.name.localeCompare(b.name) || a.clientId - b.clientId);
  for (const p of people) {
    lines.push(`${p.name}${p.editor ? ` · ${p.editor}` : ''} (#${p.clientId})`);
  }
  if (people.length === 0) {
    lines.push('nobody else seen yet');
  }
  return lines;
}
