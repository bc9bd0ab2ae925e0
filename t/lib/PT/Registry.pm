package PT::Registry;

# A real upstream registry for the data-plane tests: Debian's docker-registry
# (CNCF distribution 2.8.x) on a free loopback port, with its own storage.
#
#   my $reg = PT::Registry->new->start;           # plain http
#   my $reg = PT::Registry->new(auth => { alice => 'secret' })->start;
#   my $reg = PT::Registry->new(tls => { cert => $crt, key => $key })->start;
#   my $reg = PT::Registry->new(tls => { cert => $crt, key => $key,
#                                        clientcas => $ca->ca_pem,
#                                        client_cert => $cli->{cert},
#                                        client_key => $cli->{key} })->start;
#   my $reg = PT::Registry->new(token => $issuer->registry_token)->start;
#   my $img = $reg->without_auth(sub { PT::Images::seed($reg, 'hello') });
#
#   $reg->url;             # http://127.0.0.1:PORT
#   $reg->host;            # 127.0.0.1:PORT (for docker:// references)
#   $reg->reset_requests;  # forget what was served so far
#   ... pull through nginx ...
#   my @r = $reg->requests;   # ({ method, path, status, ... }, ...)
#   is(scalar @r, 0, 'the second pull made no upstream request');
#   $reg->stop;            # also done in DESTROY and in an END block
#
# Each instance owns a temporary directory holding config.yml, the storage
# (data/), the access log (access.log: the registry's stdout, one Apache
# combined-format line per request), the registry's own log (registry.log:
# its stderr, logrus text lines) and, with auth, the htpasswd file. Set
# PT_KEEP=1 to keep the directories. The registry runs as a child of the
# test, a PT::Child: a watcher process stops it when the test is killed.
#
# Tests run need_tools('docker-registry') first (htpasswd too with auth,
# curl with tls).
#
# Environment: PT_REGISTRY_BIN (default /usr/bin/docker-registry). The
# registry reads REGISTRY_* variables as configuration overrides (e.g.
# REGISTRY_HTTP_ADDR), so the child runs without them.

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(sleep time);

use parent 'PT::Child';
use PT::Util qw(slurp spew run_output free_port match_requests
                missing_tools declare_tool);

our $BIN = $ENV{PT_REGISTRY_BIN} || '/usr/bin/docker-registry';
declare_tool('docker-registry', 'docker-registry', $BIN);
our $TIMEOUT = 15;      # seconds to wait for the registry to start or stop

my $OWN_PREFIX = '/v2/?pt-';      # the harness's own requests
my $SYNC_PATH = '/v2/?pt-sync=';
my $READY_PATH = '/v2/?pt-ready';


# PT::Registry->new(%opt)
#   dir    => DIR          working directory (default: a new temp dir)
#   port   => N            port (default: a free one, changed if taken)
#   auth   => { USER => PASSWORD, ... }
#                          htpasswd basic auth (bcrypt file made with
#                          `htpasswd -Bbn`, from apache2-utils)
#   tls    => { cert => FILE, key => FILE }
#                          serve https with this certificate (PEM files)
#             with clientcas => FILE or [FILE, ...]  (http.tls.clientcas)
#                          mutual TLS: the registry demands a client
#                          certificate signed by one of these CAs (PEM) and
#                          ends the handshake of a client without one
#             with client_cert => FILE, client_key => FILE
#                          a certificate the clientcas accept, which the
#                          harness's own requests present (start's readiness
#                          probe, the sync request of requests and
#                          reset_requests). Without it start waits for the
#                          registry to refuse a TLS 1.2 handshake without a
#                          certificate (an alert: the TLS server is up),
#                          and requests/reset_requests croak.
#                          without_auth drops clientcas too (skopeo, hence
#                          PT::Images::seed, presents no certificate).
#   secret => STRING       http.secret (default: a fixed test value)
#   config => STRING       extra YAML appended under the top level
#                          (e.g. "proxy:\n  remoteurl: ...\n")
#   token  => { realm => URL, service => NAME, issuer => NAME,
#               cert => FILE, user => USER, password => PASSWORD }
#                          token auth (auth: token: realm, service,
#                          issuer, rootcertbundle = cert, a PEM file):
#                          clients need a JWT from the realm (see
#                          PT::TokenIssuer, whose registry_token gives the
#                          first four). user/password (optional) are the
#                          realm's credentials that credentials/creds
#                          return and that request() sends to the realm.
#                          Not with auth.
sub new {
    my ($class, %opt) = @_;

    my %known = map { $_ => 1 } qw(dir port auth tls secret config token);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::Registry->new: unknown option(s) @bad" if @bad;

    # tests skip with need_tools('docker-registry'): this is a safety net
    if (my $why = missing_tools('docker-registry')) {
        croak "PT::Registry: $why; set PT_REGISTRY_BIN";
    }

    if (my $tk = $opt{token}) {
        croak "PT::Registry->new: auth or token, not both" if $opt{auth};
        my @miss = grep { !defined $tk->{$_} } qw(realm service issuer cert);
        croak "PT::Registry->new: token needs @miss" if @miss;
        croak "PT::Registry->new: token cert $tk->{cert} not found"
            unless -f $tk->{cert};
    }

    my $tls = $opt{tls} && _tls_option($opt{tls});

    my $self = bless {
        dir    => $opt{dir} || tempdir('pt-registry-XXXXXXXX', TMPDIR => 1,
                                       CLEANUP => !$ENV{PT_KEEP}),
        port   => $opt{port},
        fixed_port => defined $opt{port},
        auth   => $opt{auth},
        token  => $opt{token},
        tls    => $tls,
        secret => $opt{secret} // 'pt-test-registry-secret',
        extra  => $opt{config} // '',
        pid    => undef,
        seen   => 0,       # access log lines hidden by reset_requests
        sync   => 0,
    }, $class;

    $self->{port} ||= free_port();
    Test::More::diag("registry directory: $self->{dir}")
        if $ENV{PT_KEEP} && Test::More->can('diag');

    $self->_write_htpasswd if $self->{auth};

    return $self->_track;
}


# accessors

sub dir { $_[0]{dir} }
sub port { $_[0]{port} }
sub name { 'docker-registry' }
sub timeout { $TIMEOUT }
sub scheme { $_[0]{tls} ? 'https' : 'http' }
sub host { '127.0.0.1:' . $_[0]{port} }
sub url { $_[0]->scheme . '://' . $_[0]->host }
sub storage_dir { "$_[0]{dir}/data" }
sub config_file { "$_[0]{dir}/config.yml" }
sub access_log_file { "$_[0]{dir}/access.log" }
sub log_file { "$_[0]{dir}/registry.log" }
sub htpasswd_file { $_[0]{auth} ? "$_[0]{dir}/htpasswd" : undef }
sub tls { $_[0]{tls} }
sub token { $_[0]{token} }

# the CA files the registry demands a client certificate from (while it
# does: not inside without_auth), () otherwise
sub clientcas {
    my ($self) = @_;
    return () if !$self->{tls} || $self->{auth_off};
    return @{ $self->{tls}{clientcas} || [] };
}

sub access_log { slurp($_[0]->access_log_file) }
sub registry_log { slurp($_[0]->log_file) }

# ([USER, PASSWORD]) of the first user (sorted by name), or () without auth;
# with token: its user and password, when given
sub credentials {
    my ($self) = @_;
    if (my $tk = $self->{token}) {
        return defined $tk->{user} ? ($tk->{user}, $tk->{password} // '')
                                   : ();
    }
    return () unless $self->{auth};
    my ($user) = sort keys %{ $self->{auth} };
    return ($user, $self->{auth}{$user});
}

# "USER:PASSWORD" for skopeo --creds, or undef without auth
sub creds {
    my ($self) = @_;
    my ($u, $p) = $self->credentials;
    return defined $u ? "$u:$p" : undef;
}


# the tls option checked, clientcas made a list (a copy: the caller's hash
# is left alone)
sub _tls_option {
    my ($in) = @_;

    croak "PT::Registry->new: tls is a hash" unless ref $in eq 'HASH';
    my %known = map { $_ => 1 } qw(cert key clientcas client_cert client_key);
    my @bad = grep { !$known{$_} } sort keys %$in;
    croak "PT::Registry->new: unknown tls option(s) @bad" if @bad;

    my %tls = %$in;
    croak "PT::Registry->new: tls needs cert and key files"
        unless $tls{cert} && -f $tls{cert} && $tls{key} && -f $tls{key};

    if (defined $tls{clientcas}) {
        my $cas = $tls{clientcas};
        my @cas = ref $cas eq 'ARRAY' ? @$cas : ($cas);
        croak "PT::Registry->new: tls clientcas is a file or a list of files"
            if !@cas || grep { !defined || ref || !-f } @cas;
        $tls{clientcas} = \@cas;
    } else {
        delete $tls{clientcas};
    }

    if (defined $tls{client_cert} || defined $tls{client_key}) {
        croak "PT::Registry->new: tls client_cert and client_key go together"
            unless $tls{client_cert} && -f $tls{client_cert}
                && $tls{client_key} && -f $tls{client_key};
    }

    return \%tls;
}


sub _write_htpasswd {
    my ($self) = @_;

    my $out = '';
    for my $user (sort keys %{ $self->{auth} }) {
        my $pass = $self->{auth}{$user};
        croak "PT::Registry: a user name cannot hold ':'" if $user =~ /:/;
        # list form: no shell, the password is never interpreted
        open my $fh, '-|', 'htpasswd', '-Bbn', $user, $pass
            or croak "htpasswd (apache2-utils): $!";
        local $/;
        my $line = <$fh>;
        close $fh;
        croak "htpasswd -Bbn failed (is apache2-utils installed?)"
            if $? || !defined $line || $line !~ /^\Q$user\E:\$2y\$/;
        $line =~ s/\s+\z//;
        $out .= "$line\n";
    }

    spew("$self->{dir}/htpasswd", $out);
}


sub _yaml_str {
    my ($s) = @_;
    $s =~ s/(["\\])/\\$1/g;
    return qq("$s");
}


sub write_config {
    my ($self) = @_;

    my $root = _yaml_str($self->storage_dir);
    my $addr = _yaml_str($self->host);
    my $secret = _yaml_str($self->{secret});

    my $yaml = <<"EOF";
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $root
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $addr
  secret: $secret
EOF

    if (my $tls = $self->{tls}) {
        $yaml .= "  tls:\n"
            . '    certificate: ' . _yaml_str($tls->{cert}) . "\n"
            . '    key: ' . _yaml_str($tls->{key}) . "\n";
        if (my @cas = $self->clientcas) {
            $yaml .= "    clientcas:\n"
                . join('', map { '      - ' . _yaml_str($_) . "\n" } @cas);
        }
    }

    $yaml .= <<'EOF';
health:
  storagedriver:
    enabled: false
EOF

    if ($self->{auth} && !$self->{auth_off}) {
        $yaml .= "auth:\n  htpasswd:\n    realm: pt-test-registry\n"
            . '    path: ' . _yaml_str($self->htpasswd_file) . "\n";
    }

    if ((my $tk = $self->{token}) && !$self->{auth_off}) {
        $yaml .= "auth:\n  token:\n"
            . '    realm: ' . _yaml_str($tk->{realm}) . "\n"
            . '    service: ' . _yaml_str($tk->{service}) . "\n"
            . '    issuer: ' . _yaml_str($tk->{issuer}) . "\n"
            . '    rootcertbundle: ' . _yaml_str($tk->{cert}) . "\n";
    }

    $yaml .= $self->{extra};

    spew($self->config_file, $yaml);
}


# starts the registry and returns once GET /v2/?pt-ready answers (200, or 401 with
# auth) or, with clientcas and no client_cert, once a TLS 1.2 handshake
# without a certificate is refused with an alert; dies with the registry's
# log if it exits or does not answer
sub start {
    my ($self) = @_;

    croak "the registry is already running" if $self->{pid};
    mkdir $self->storage_dir;

    for my $try (1 .. 3) {
        $self->write_config;
        my $mark = -s $self->log_file || 0;

        $self->_spawn(sub {
            open STDOUT, '>>', $self->access_log_file;
            open STDERR, '>>', $self->log_file;
            delete @ENV{ grep { /^REGISTRY_/ } keys %ENV };
        }, $BIN, 'serve', $self->config_file);

        return $self if $self->_wait_ready;

        # another process took the port between free_port() and the bind
        my $log = substr($self->registry_log, $mark);
        last if $self->{fixed_port}
            || $log !~ /address already in use/;
        $self->{port} = free_port();
    }

    die "docker-registry failed to start:\n" . $self->registry_log;
}


sub _wait_ready {
    my ($self) = @_;

    my $deadline = time + $TIMEOUT;

    while (time < $deadline) {
        return 0 if $self->_exited;

        if ($self->_blind) {
            return 1 if $self->_refuses_anonymous;
        } else {
            my $status = $self->_probe($READY_PATH);
            return 1 if $status == 200
                || (($self->{auth} || $self->{token}) && $status == 401);
        }

        sleep 0.02;
    }

    $self->_kill;
    die "docker-registry did not answer in $TIMEOUT s:\n" . $self->registry_log;
}


# status of an unauthenticated GET of $path, 0 when no connection;
# over https through curl (HTTP::Tiny needs IO::Socket::SSL, not core),
# with the client certificate while the registry demands one
sub _probe {
    my ($self, $path) = @_;

    unless ($self->{tls}) {
        my $r = HTTP::Tiny->new(timeout => 5)->get($self->url . $path);
        return $r->{status} == 599 ? 0 : $r->{status};
    }

    my @cert;
    @cert = ('--cert', $self->{tls}{client_cert},
             '--key', $self->{tls}{client_key})
        if $self->clientcas && $self->{tls}{client_cert};

    open my $fh, '-|', 'curl', '-sk', '-o', '/dev/null', '-m', '5', @cert,
        '-w', '%{http_code}', $self->url . $path
        or die "curl: $!";
    my $code = <$fh> // '';
    close $fh;
    return $code =~ /^(\d+)$/ ? $1 + 0 : 0;
}


# true while the registry demands a client certificate the harness has not
# got: its own requests cannot get through
sub _blind {
    my ($self) = @_;
    return $self->clientcas && !$self->{tls}{client_cert};
}


# true when a TLS 1.2 handshake without a client certificate ends with an
# alert from the registry (bad certificate): the registry serves TLS and
# demands a certificate. TLS 1.2, because in TLS 1.3 the client finishes
# its handshake first and then sees the connection closed (curl: "Send
# failure" or "getpeername() failed"), no different from a registry that
# exited; in TLS 1.2 the refusal is part of the handshake.
sub _refuses_anonymous {
    my ($self) = @_;
    my $out = run_output('curl', '-sSk', '--tlsv1.2', '--tls-max', '1.2',
                         '-m', '5', '-o', '/dev/null',
                         $self->url . $READY_PATH);
    return $? && $out =~ /\balert\b/i;
}


# without_auth(CODE): runs CODE with the registry restarted without its auth
# section and without tls clientcas (same port and storage; started if it
# was not running), then restarts it with its auth again; returns what CODE
# returns (in scalar context). For seeding a token-auth registry with
# PT::Images, whose read_back and retag send Basic credentials only, or a
# mutual-TLS one (skopeo presents no client certificate). The port can
# change if another process took it meanwhile (not with a fixed port).
sub without_auth {
    my ($self, $code) = @_;

    $self->stop if $self->{pid};
    local $self->{auth_off} = 1;
    $self->start;

    my $res = eval { $code->() };
    my $err = $@;

    $self->stop;
    $self->{auth_off} = 0;
    $self->start;

    die $err if $err;
    return $res;
}


# served requests

# The registry writes a request's access log line when its handler returns,
# which for a large blob can be just after the client got the last byte. So
# requests() first makes a request of its own (GET /v2/?pt-sync=N) and waits
# for its line: every request a client saw complete before is then logged.
# These sync requests, and the readiness probes of start (GET /v2/?pt-ready),
# never appear in the results.
sub sync_log {
    my ($self) = @_;

    return unless $self->{pid};
    croak "PT::Registry: requests of a registry with clientcas need "
        . "tls => { client_cert, client_key } (for its sync request)"
        if $self->_blind;

    my $uri = $SYNC_PATH . ++$self->{sync};
    $self->_probe($uri);

    my $deadline = time + 5;
    while (time < $deadline) {
        return if index($self->access_log, qq{"GET $uri HTTP/}) >= 0;
        sleep 0.01;
    }
    die "docker-registry did not log $uri\n";
}


# ({ method, uri, path, query, status, bytes, user_agent, remote_addr,
#    user, line }, ...)
# the requests served since start (or the last reset_requests), in the order
# the registry logged them (= order of completion)
sub requests {
    my ($self) = @_;

    $self->sync_log;

    my @lines = split /\n/, $self->access_log;
    my @r;
    for my $i ($self->{seen} .. $#lines) {
        my $req = parse_access_line($lines[$i]) or next;
        next if $req->{method} eq 'GET'
            && index($req->{uri}, $OWN_PREFIX) == 0;
        push @r, $req;
    }

    return @r;
}


# hides the requests served so far from requests()
sub reset_requests {
    my ($self) = @_;
    $self->sync_log;
    my @lines = split /\n/, $self->access_log;
    $self->{seen} = @lines;
    return $self;
}


# the requests whose method matches $method (a string, or undef for any)
# and whose path matches $re (a regexp or string, or undef for any)
sub requests_matching {
    my ($self, $method, $re) = @_;
    return match_requests('path', $method, $re, $self->requests);
}


# 127.0.0.1 - alice [27/Nov/2026:08:12:50 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
sub parse_access_line {
    my ($line) = @_;

    $line =~ m{^(\S+) \S+ (\S+) \[([^\]]+)\] "(\S+) (\S+) ([^"]*)" (\d{3}) (\d+|-)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?}
        or return;

    my ($path, $query) = split /\?/, $5, 2;

    return {
        remote_addr => $1,
        user        => $2 eq '-' ? undef : $2,
        time        => $3,
        method      => $4,
        uri         => $5,
        path        => $path,
        query       => $query,
        protocol    => $6,
        status      => $7 + 0,
        bytes       => $8 eq '-' ? 0 : $8 + 0,
        referer     => $9,
        user_agent  => $10,
        line        => $line,
    };
}


# HTTP to the registry (plain http only), with the instance's credentials
# unless auth => undef or [USER, PASS] is given:
# $reg->get(PATH, headers => {...}) -> HTTP::Tiny response
sub get {
    my ($self, $path, %opt) = @_;
    return $self->request('GET', $path, %opt);
}

sub head {
    my ($self, $path, %opt) = @_;
    return $self->request('HEAD', $path, %opt);
}

sub request {
    my ($self, $method, $path, %opt) = @_;

    croak "PT::Registry->request: no https without IO::Socket::SSL"
        if $self->{tls};

    my %h = %{ $opt{headers} || {} };
    my $auth = exists $opt{auth} ? $opt{auth} : [ $self->credentials ];
    if ($auth && @$auth) {
        $h{Authorization} = 'Basic '
            . encode_base64("$auth->[0]:$auth->[1]", '');
    }

    my %args = (headers => \%h);
    $args{content} = $opt{content} if defined $opt{content};
    $args{data_callback} = $opt{data_callback} if $opt{data_callback};

    my $url = $path =~ m{^https?://} ? $path : $self->url . $path;
    my $ua = HTTP::Tiny->new(timeout => 60, max_redirect => 0);
    my $res = $ua->request($method, $url, \%args);

    # token auth: a Bearer challenge is answered with a token from its
    # realm, asked for with the credentials, and the request made again
    my $chal = $res->{headers}{'www-authenticate'} // '';
    $chal = $chal->[0] if ref $chal;
    if ($self->{token} && $res->{status} == 401 && $chal =~ /^Bearer\s/i) {
        my $tok = $self->bearer_token($chal, $auth);
        if (defined $tok) {
            $h{Authorization} = "Bearer $tok";
            $res = $ua->request($method, $url, \%args);
        }
    }

    return $res;
}


# bearer_token(CHALLENGE, [USER, PASS] or undef): the token the challenge's
# realm gives for its service and scope (undef when it refuses)
sub bearer_token {
    my ($self, $chal, $auth) = @_;

    my %p;
    while ($chal =~ /(\w+)="([^"]*)"/g) { $p{lc $1} = $2 }
    return undef unless $p{realm};

    my @q;
    push @q, 'service=' . _escape($p{service}) if defined $p{service};
    push @q, 'scope=' . _escape($p{scope}) if defined $p{scope};
    my $url = $p{realm} . (@q ? ($p{realm} =~ /\?/ ? '&' : '?') . join('&', @q) : '');

    my %h;
    $h{Authorization} = 'Basic ' . encode_base64("$auth->[0]:$auth->[1]", '')
        if $auth && @$auth;
    my $r = HTTP::Tiny->new(timeout => 30)->get($url, { headers => \%h });
    return undef unless $r->{status} == 200;

    require JSON::PP;
    my $j = eval { JSON::PP::decode_json($r->{content}) } or return undef;
    return $j->{token} // $j->{access_token};
}


sub _escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9._~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}


1;
