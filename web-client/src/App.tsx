// The console: providers, app shell and routes over an injected transport.

import type { Transport } from '@connectrpc/connect';
import CssBaseline from '@mui/material/CssBaseline';
import { ThemeProvider, createTheme } from '@mui/material/styles';
import { useMemo } from 'react';
import { Route, Routes } from 'react-router';
import type { TokenStore } from './auth';
import { AppShell } from './components/AppShell';
import { NotFoundPage } from './pages/NotFoundPage';
import { DetailRoute } from './routes/DetailRoute';
import { ListRoute } from './routes/ListRoute';
import { NewRoute } from './routes/NewRoute';
import { RunnersRoute } from './routes/RunnersRoute';
import { SuiteRoute, SuitesRoute } from './routes/SuiteRoutes';
import { StoreProvider, useToken, useTokens } from './store/react';
import { TestrunStore, type StoreOptions } from './store/TestrunStore';

const theme = createTheme({
  palette: {
    primary: { main: '#3949ab' },
    secondary: { main: '#ffb300' },
    background: { default: '#f4f5f8' },
  },
  shape: { borderRadius: 8 },
});

export interface AppProps {
  /** The one transport (grpc-web in the browser, a router transport in tests). */
  transport: Transport;
  tokens: TokenStore;
  storeOptions?: StoreOptions;
}

/** Everything below the router; the caller picks the router (browser or memory). */
export function App(props: AppProps) {
  const { transport, storeOptions } = props;
  const store = useMemo(() => new TestrunStore(transport, storeOptions), [transport, storeOptions]);
  return (
    <ThemeProvider theme={theme}>
      <CssBaseline />
      <StoreProvider store={store} tokens={props.tokens}>
        <Shell />
      </StoreProvider>
    </ThemeProvider>
  );
}

function Shell() {
  const tokens = useTokens();
  const token = useToken();
  return (
    <AppShell token={token} onTokenChange={(t) => tokens.set(t)}>
      <Routes>
        <Route path="/" element={<ListRoute />} />
        <Route path="/new" element={<NewRoute />} />
        <Route path="/testruns/:id" element={<DetailRoute />} />
        <Route path="/suites" element={<SuitesRoute />} />
        <Route path="/suites/:name" element={<SuiteRoute />} />
        <Route path="/runners" element={<RunnersRoute />} />
        <Route path="*" element={<NotFoundPage />} />
      </Routes>
    </AppShell>
  );
}
