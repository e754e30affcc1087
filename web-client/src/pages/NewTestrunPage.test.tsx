import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import type { NewTestrun } from '../store/TestrunStore';
import { NewTestrunPage } from './NewTestrunPage';

function setup(onSubmit: (input: NewTestrun) => Promise<Record<string, string> | null>) {
  render(
    <MemoryRouter>
      <NewTestrunPage onSubmit={onSubmit} />
    </MemoryRouter>,
  );
  const input = screen.getByTestId('file-input') as HTMLInputElement;
  const pick = (...files: File[]) => fireEvent.change(input, { target: { files } });
  return { pick };
}

describe('NewTestrunPage', () => {
  it('reads picked files as text and submits them with the form', async () => {
    const onSubmit = vi.fn(async () => null);
    const { pick } = setup(onSubmit);
    fireEvent.change(screen.getByTestId('username'), { target: { value: 'alice' } });
    pick(new File(['echo hello; exit 0'], 'ok.sh'), new File(['exit 3'], 'bad.sh'));
    await screen.findByText('bad.sh');
    fireEvent.change(screen.getByTestId('timeout'), { target: { value: '30' } });
    fireEvent.click(screen.getByTestId('submit'));
    await waitFor(() => expect(onSubmit).toHaveBeenCalled());
    expect(onSubmit).toHaveBeenCalledWith({
      username: 'alice',
      files: [
        { name: 'ok.sh', content: 'echo hello; exit 0' },
        { name: 'bad.sh', content: 'exit 3' },
      ],
      command: '',
      timeoutSeconds: 30,
      retries: 0,
      selector: {},
    });
  });

  it('shows a server error beside the field it names', async () => {
    const { pick } = setup(async () => ({ username: 'must be 1 to 64 characters (got 65)' }));
    pick(new File(['exit 0'], 'ok.sh'));
    await screen.findByText('ok.sh');
    fireEvent.change(screen.getByTestId('username'), { target: { value: 'x'.repeat(65) } });
    fireEvent.click(screen.getByTestId('submit'));
    const helper = await screen.findByTestId('username-helper');
    await waitFor(() => expect(helper.textContent).toBe('must be 1 to 64 characters (got 65)'));
    expect(screen.getByTestId('username').getAttribute('aria-invalid')).toBe('true');
  });

  it('shows a file error beside that file and a tests error under the drop zone', async () => {
    const { pick } = setup(async (input): Promise<Record<string, string>> =>
      input.files.length === 0 ? { tests: 'at least one test is required' } : { 'tests[1].name': "contains '\\\\'" },
    );
    fireEvent.click(screen.getByTestId('submit'));
    expect((await screen.findByTestId('tests-error')).textContent).toBe('at least one test is required');
    pick(new File(['a'], 'a.sh'), new File(['b'], 'b\\c.sh'));
    await screen.findByText('b\\c.sh');
    fireEvent.click(screen.getByTestId('submit'));
    await screen.findByText("contains '\\\\'");
  });

  it('refuses a timeout that is not a whole number of seconds', async () => {
    const onSubmit = vi.fn(async () => null);
    setup(onSubmit);
    fireEvent.change(screen.getByTestId('timeout'), { target: { value: '1.5' } });
    fireEvent.click(screen.getByTestId('submit'));
    await screen.findByText(/whole number of seconds/);
    expect(onSubmit).not.toHaveBeenCalled();
  });

  it('submits suite, retries and selector', async () => {
    const onSubmit = vi.fn(async () => null);
    const { pick } = setup(onSubmit);
    fireEvent.change(screen.getByTestId('username'), { target: { value: 'alice' } });
    pick(new File(['exit 0'], 'ok.sh'));
    await screen.findByText('ok.sh');
    fireEvent.change(screen.getByTestId('suite'), { target: { value: 'backend' } });
    fireEvent.mouseDown(screen.getByRole('combobox', { name: /Retries/ }));
    fireEvent.click(await screen.findByTestId('retries-2'));
    fireEvent.change(screen.getByTestId('selector'), { target: { value: 'gpu=a100, os=linux' } });
    fireEvent.click(screen.getByTestId('submit'));
    await waitFor(() => expect(onSubmit).toHaveBeenCalled());
    expect(onSubmit).toHaveBeenCalledWith(
      expect.objectContaining({ suite: 'backend', retries: 2, selector: { gpu: 'a100', os: 'linux' } }),
    );
    // A menu and a file read on a loaded 2-core machine.
  }, 20_000);

  it('checks the selector and suite before sending, with the server\'s messages', async () => {
    const onSubmit = vi.fn(async () => null);
    setup(onSubmit);
    fireEvent.change(screen.getByTestId('selector'), { target: { value: 'gpu=' } });
    fireEvent.change(screen.getByTestId('suite'), { target: { value: 's'.repeat(129) } });
    fireEvent.click(screen.getByTestId('submit'));
    expect(await screen.findByText('selector["gpu"]: value must not be empty')).toBeTruthy();
    expect(screen.getByText('must be 1 to 128 characters (got 129)')).toBeTruthy();
    expect(onSubmit).not.toHaveBeenCalled();
    // Editing a field clears its error only.
    fireEvent.change(screen.getByTestId('selector'), { target: { value: 'gpu=a100' } });
    await waitFor(() => expect(screen.queryByText('selector["gpu"]: value must not be empty')).toBeNull());
    expect(screen.getByText('must be 1 to 128 characters (got 129)')).toBeTruthy();
  });

  it('shows a server selector error beside the selector', async () => {
    const { pick } = setup(async () => ({ 'selector["x y"]': `key "x y" contains ' ' (allowed: letters, digits, '.', '_', '-')` }));
    pick(new File(['exit 0'], 'ok.sh'));
    await screen.findByText('ok.sh');
    fireEvent.click(screen.getByTestId('submit'));
    expect(
      await screen.findByText(`selector["x y"]: key "x y" contains ' ' (allowed: letters, digits, '.', '_', '-')`),
    ).toBeTruthy();
    expect(screen.queryByTestId('form-error')).toBeNull();
  });
});
