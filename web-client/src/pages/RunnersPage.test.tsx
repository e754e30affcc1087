import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import { RunnerInfoSchema, RunnerTokenSchema } from '../gen/testrunner/v1/admin_pb';
import { T0 } from '../test/fixtures';
import { RunnersPage, tokenNameError, type RunnersPageProps } from './RunnersPage';

const gpu = create(RunnerInfoSchema, {
  id: 'r-1',
  name: 'gpu-1',
  labels: { gpu: 'a100', os: 'linux' },
  slots: 4,
  version: '0.9.0',
  running: [{ testrunId: 12n, testId: 5n, name: 'train.py' }],
  registeredAt: timestampFromMs(T0),
});
const cpu = create(RunnerInfoSchema, { id: 'r-2', name: 'cpu-1', slots: 2, version: '0.9.0', draining: true, tokenName: 'pool-cpu' });

function renderPage(overrides: Partial<RunnersPageProps> = {}) {
  const props: RunnersPageProps = {
    runners: [gpu, cpu],
    tokens: [
      create(RunnerTokenSchema, { name: 'pool-cpu', createdAt: timestampFromMs(T0) }),
      create(RunnerTokenSchema, { name: 'old', createdAt: timestampFromMs(T0), revokedAt: timestampFromMs(T0 + 1000) }),
    ],
    onDrain: vi.fn(async () => {}),
    onCreateToken: vi.fn(async () => 'trt_secret_123'),
    onRevokeToken: vi.fn(async () => {}),
    ...overrides,
  };
  render(
    <MemoryRouter>
      <RunnersPage {...props} />
    </MemoryRouter>,
  );
  return props;
}

describe('RunnersPage', () => {
  it('lists runners with labels, slots, running tests and state', () => {
    renderPage();
    const rows = screen.getAllByTestId('runner-row');
    expect(rows).toHaveLength(2);
    const g = rows[0]!;
    expect(within(g).getByText('gpu=a100')).toBeTruthy();
    expect(within(g).getByText('os=linux')).toBeTruthy();
    expect(within(g).getByText('1 / 4')).toBeTruthy();
    expect(within(g).getByRole('link', { name: '#12 train.py' }).getAttribute('href')).toBe('/testruns/12?test=train.py');
    expect(within(g).getByRole('button', { name: 'Drain' })).toBeTruthy();
    const c = rows[1]!;
    expect(c.getAttribute('data-draining')).toBe('true');
    expect(within(c).getByTestId('draining')).toBeTruthy();
    expect(within(c).queryByRole('button', { name: 'Drain' })).toBeNull();
    expect(within(c).getByText('token pool-cpu')).toBeTruthy();
    expect(screen.getByTestId('runner-count').textContent).toBe('2 attached');
  });

  it('drains only after the confirmation', async () => {
    const props = renderPage();
    fireEvent.click(within(screen.getAllByTestId('runner-row')[0]!).getByRole('button', { name: 'Drain' }));
    const dialog = await screen.findByRole('dialog');
    expect(props.onDrain).not.toHaveBeenCalled();
    fireEvent.click(within(dialog).getByRole('button', { name: 'Drain' }));
    await waitFor(() => expect(props.onDrain).toHaveBeenCalledWith(gpu));
  });

  it('checks a token name, shows the secret once, and revokes after confirmation', async () => {
    const props = renderPage();
    fireEvent.change(screen.getByTestId('token-name'), { target: { value: 'bad name' } });
    fireEvent.click(screen.getByTestId('create-token'));
    expect(await screen.findByText(`name: "bad name" must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'`)).toBeTruthy();
    expect(props.onCreateToken).not.toHaveBeenCalled();
    fireEvent.change(screen.getByTestId('token-name'), { target: { value: 'pool-gpu' } });
    fireEvent.click(screen.getByTestId('create-token'));
    expect((await screen.findByTestId('token-secret-value')).textContent).toBe('trt_secret_123');
    expect(props.onCreateToken).toHaveBeenCalledWith('pool-gpu');

    const rows = screen.getAllByTestId('token-row');
    expect(within(rows[1]!).getByTestId('revoked')).toBeTruthy();
    fireEvent.click(within(rows[0]!).getByRole('button', { name: 'Revoke' }));
    const dialog = await screen.findByRole('dialog');
    fireEvent.click(within(dialog).getByRole('button', { name: 'Revoke' }));
    await waitFor(() => expect(props.onRevokeToken).toHaveBeenCalledWith('pool-cpu'));
  });

  it('shows a refused token name beside the field', async () => {
    renderPage({ onCreateToken: async () => Promise.reject(new ConnectError('name: token "x" exists', Code.AlreadyExists)) });
    fireEvent.change(screen.getByTestId('token-name'), { target: { value: 'x' } });
    fireEvent.click(screen.getByTestId('create-token'));
    expect(await screen.findByText(/token "x" exists/)).toBeTruthy();
  });

  it('accepts the names the coordinator accepts', () => {
    expect(tokenNameError('pool-gpu.1_a')).toBeUndefined();
    expect(tokenNameError('')).toBeDefined();
    expect(tokenNameError('x'.repeat(65))).toBeDefined();
  });
});
