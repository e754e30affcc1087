import AddIcon from '@mui/icons-material/Add';
import KeyIcon from '@mui/icons-material/Key';
import DnsIcon from '@mui/icons-material/Dns';
import InsightsIcon from '@mui/icons-material/Insights';
import ListIcon from '@mui/icons-material/ViewList';
import AppBar from '@mui/material/AppBar';
import Badge from '@mui/material/Badge';
import Box from '@mui/material/Box';
import Button from '@mui/material/Button';
import Container from '@mui/material/Container';
import IconButton from '@mui/material/IconButton';
import Toolbar from '@mui/material/Toolbar';
import Tooltip from '@mui/material/Tooltip';
import Typography from '@mui/material/Typography';
import { useState, type ReactNode } from 'react';
import { Link as RouterLink, useLocation } from 'react-router';
import { SettingsDialog } from './SettingsDialog';

export interface AppShellProps {
  token: string;
  onTokenChange: (token: string) => void;
  children: ReactNode;
}

// On a phone the navigation buttons show their icons only.
const hideOnPhone = { display: { xs: 'none', sm: 'inline' } } as const;
const navSx = { minWidth: 0, '& .MuiButton-startIcon': { mr: { xs: 0, sm: 1 } } } as const;

/** The top navigation bar and the page frame. */
export function AppShell(props: AppShellProps) {
  const [settings, setSettings] = useState(false);
  const path = useLocation().pathname;
  return (
    <Box sx={{ minHeight: '100vh', bgcolor: 'background.default' }}>
      <AppBar position="sticky" elevation={1}>
        <Toolbar variant="dense" sx={{ gap: { xs: 0.5, sm: 1 } }}>
          <Typography
            variant="h6"
            component={RouterLink}
            to="/"
            sx={{ color: 'inherit', textDecoration: 'none', fontWeight: 700, mr: { xs: 1, sm: 3 } }}
          >
            TestRunner
          </Typography>
          <Button
            color="inherit"
            component={RouterLink}
            to="/"
            startIcon={<ListIcon />}
            aria-label="Testruns"
            sx={{ ...navSx, opacity: path === '/' || path.startsWith('/testruns') ? 1 : 0.75 }}
          >
            <Box component="span" sx={hideOnPhone}>
              Testruns
            </Box>
          </Button>
          <Button
            color="inherit"
            component={RouterLink}
            to="/new"
            startIcon={<AddIcon />}
            aria-label="New Testrun"
            sx={{ ...navSx, opacity: path === '/new' ? 1 : 0.75 }}
          >
            <Box component="span" sx={hideOnPhone}>
              New
            </Box>
          </Button>
          <Button
            color="inherit"
            component={RouterLink}
            to="/suites"
            startIcon={<InsightsIcon />}
            aria-label="Suites"
            sx={{ ...navSx, opacity: path.startsWith('/suites') ? 1 : 0.75 }}
          >
            <Box component="span" sx={hideOnPhone}>
              Suites
            </Box>
          </Button>
          <Button
            color="inherit"
            component={RouterLink}
            to="/runners"
            startIcon={<DnsIcon />}
            aria-label="Runners"
            sx={{ ...navSx, opacity: path === '/runners' ? 1 : 0.75 }}
          >
            <Box component="span" sx={hideOnPhone}>
              Runners
            </Box>
          </Button>
          <Box sx={{ flexGrow: 1 }} />
          <Tooltip title={props.token === '' ? 'Settings: no API token set' : 'Settings: API token set'}>
            <IconButton color="inherit" onClick={() => setSettings(true)} aria-label="Settings">
              <Badge color="secondary" variant="dot" invisible={props.token === ''}>
                <KeyIcon />
              </Badge>
            </IconButton>
          </Tooltip>
        </Toolbar>
      </AppBar>
      <Container maxWidth="xl" component="main" sx={{ py: { xs: 2, sm: 3 }, px: { xs: 1, sm: 3 } }}>
        {props.children}
      </Container>
      <SettingsDialog
        open={settings}
        token={props.token}
        onSave={props.onTokenChange}
        onClose={() => setSettings(false)}
      />
    </Box>
  );
}
