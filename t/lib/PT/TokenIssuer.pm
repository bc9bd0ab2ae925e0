package PT::TokenIssuer;

# A small token issuer (the "realm" of a registry's Bearer challenge) for
# the upstream-access tests: the Docker registry token protocol, as
# Docker Hub, ghcr.io and CNCF distribution's token auth speak it.
#
#   my $iss = PT::TokenIssuer->new(users => { alice => 'pw' })->start;
#   my $reg = PT::Registry->new(token => $iss->registry_token)->start;
#   $iss->realm;           # http://127.0.0.1:PORT/token
#   $iss->set(expires_in => 2);            # takes effect at once
#   my @r = $iss->requests;                # what was asked, and answered
#   my @t = $iss->token_requests(user => 'alice', scope => qr/hello/);
#   $iss->reset_requests;   # requests() then starts after what was seen
#   $iss->stop;            # also done in DESTROY and at exit
#
# GET /token?service=S&scope=SC[&scope=SC2...] (scope may be absent) answers
# 200 {"token": JWT, "access_token": JWT, "expires_in": N, "issued_at": T}.
# The JWT is signed RS256 (openssl dgst -sha256 -sign) with a key made at
# new() (openssl req -x509: a self-signed RSA certificate, cert_file, which
# is the registry's rootcertbundle); its header carries that certificate in
# "x5c" (base64 DER), which is how distribution finds the key that signed
# it. Claims: iss (issuer), sub (the Basic user, "" when anonymous), aud
# (the service asked for), exp (now + expires_in, or + 60 when expires_in
# is omitted), nbf, iat, jti (unique), access (one entry per
# "repository:NAME:ACTIONS" scope, with the actions asked for among those
# granted: pull, and push unless no_push).
#
# Options (new, and set while running; set writes a file the connection
# processes read at each request):
#   users        => { USER => PASSWORD }   Basic credentials required
#                   (401 without them or with others); absent or undef:
#                   anyone, credentials or not, gets a token
#   expires_in   => N        (default 300)
#   omit_expires_in => 1     no expires_in in the answer
#   only_access_token => 1   "access_token" only (no "token")
#   only_token   => 1        "token" only (no "access_token")
#   no_push      => 1        grant pull only
#   status       => N        answer every token request with N (an error)
#   fail_next    => N        answer the next N token requests (counted from
#                            this set) with status, or 503; then as usual
#   issuer       => STRING   (default pt-issuer)
#   service      => STRING   what registry_token gives the registry
#                            (default pt-test)
# new only: dir, port, addr (the address to listen on and put in the
# realm, default 127.0.0.1), key/cert (PEM files to use instead of new ones).
#
# The server is a process forked by start() that forks again for each
# connection (one request per connection, Connection: close), as
# every PT::Server does; the settings file is how set() reaches it.
#
# Every request is logged (requests.log, one JSON object a line) once its
# answer is decided and before it is sent: a client that got its answer
# finds its request in requests(). A record: { method, uri, path, query,
# service, scopes => [...], authorization (the header as sent), user and
# password (decoded from Basic, when sent), status (answered), token (the
# JWT answered), jti, exp, expires_in, time, pid }.

use strict;
use warnings;

use Carp qw(croak);
use Fcntl qw(:flock);
use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);

use parent 'PT::Server';
use PT::Util qw(slurp spew run_output);

my $JSON = JSON::PP->new->utf8->canonical;

my @SETTINGS = qw(users expires_in omit_expires_in only_access_token
                  only_token no_push status issuer service fail_next);


sub new {
    my ($class, %opt) = @_;

    my %known = map { $_ => 1 } @SETTINGS, qw(dir port addr key cert);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::TokenIssuer->new: unknown option(s) @bad" if @bad;

    my $self = bless {
        dir => $opt{dir} || tempdir('pt-issuer-XXXXXXXX', TMPDIR => 1,
                                    CLEANUP => !$ENV{PT_KEEP}),
        port => $opt{port},
        addr => $opt{addr} // '127.0.0.1',
        pid => undef,
        seen => 0,
        settings => { issuer => 'pt-issuer', service => 'pt-test',
                      expires_in => 300 },
    }, $class;

    Test::More::diag("token issuer directory: $self->{dir}")
        if $ENV{PT_KEEP} && Test::More->can('diag');

    if ($opt{key} || $opt{cert}) {
        croak "PT::TokenIssuer->new: key and cert go together"
            unless $opt{key} && -f $opt{key} && $opt{cert} && -f $opt{cert};
        $self->{key} = $opt{key};
        $self->{cert} = $opt{cert};
    } else {
        $self->{key} = "$self->{dir}/issuer.key";
        $self->{cert} = "$self->{dir}/issuer.crt";
        my $out = run_output(
            'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
            '-days', '2', '-subj', '/CN=pt-token-issuer',
            '-keyout', $self->{key}, '-out', $self->{cert});
        croak "openssl req: $out" if $?;
    }

    # x5c: the certificate's DER in base64, which is the PEM body
    my $pem = slurp($self->{cert});
    my ($b64) = $pem =~ /-----BEGIN CERTIFICATE-----\s*(.*?)-----END CERTIFICATE-----/s
        or croak "no certificate in $self->{cert}";
    $b64 =~ s/\s+//g;
    $self->{x5c} = $b64;

    my %s = map { $_ => $opt{$_} } grep { exists $opt{$_} } @SETTINGS;
    $self->set(%s);

    return $self->_track;
}


sub realm { $_[0]->url . '/token' }
sub cert_file { $_[0]{cert} }
sub key_file { $_[0]{key} }
sub x5c { $_[0]{x5c} }
sub name { 'token issuer' }
sub issuer { $_[0]{settings}{issuer} }
sub service { $_[0]{settings}{service} }
sub settings { +{ %{ $_[0]{settings} } } }

# what PT::Registry->new(token => ...) takes
sub registry_token {
    my ($self) = @_;
    croak "PT::TokenIssuer: start it before registry_token (the port)"
        unless $self->{port};
    return { realm => $self->realm, service => $self->service,
             issuer => $self->issuer, cert => $self->cert_file };
}


# changes settings (see the options); undef deletes one
sub set {
    my ($self, %s) = @_;

    my %known = map { $_ => 1 } @SETTINGS;
    my @bad = grep { !$known{$_} } sort keys %s;
    croak "PT::TokenIssuer->set: unknown setting(s) @bad" if @bad;

    for my $k (keys %s) {
        if (defined $s{$k}) { $self->{settings}{$k} = $s{$k} }
        else { delete $self->{settings}{$k} }
    }

    # fail_next counts from here
    unlink "$self->{dir}/failed.count" if exists $s{fail_next};

    my $f = "$self->{dir}/settings.json";
    spew("$f.tmp", $JSON->encode($self->{settings}));
    rename "$f.tmp", $f or die "rename $f: $!";

    return $self;
}


# the log

# every request since start, reset_requests or not
sub all_requests {
    my ($self) = @_;
    local $self->{seen} = 0;
    return $self->requests;
}

# the requests for the token path, filtered:
#   user => NAME (undef: anonymous), status => N,
#   scope => STRING or qr// (one of the request's scopes matches),
#   service => STRING
sub token_requests {
    my ($self, %f) = @_;

    my @r = grep { $_->{path} eq '/token' } $self->requests;

    @r = grep { ($_->{user} // "\0") eq ($f{user} // "\0") } @r
        if exists $f{user};
    @r = grep { $_->{status} == $f{status} } @r if defined $f{status};
    @r = grep { ($_->{service} // '') eq $f{service} } @r
        if defined $f{service};
    if (defined $f{scope}) {
        my $m = $f{scope};
        @r = grep {
            grep { ref $m ? $_ =~ $m : $_ eq $m } @{ $_->{scopes} }
        } @r;
    }

    return @r;
}


# the claims of a JWT (no verification), or undef
sub claims {
    my ($jwt) = @_;
    my (undef, $p) = split /\./, $jwt // '';
    return undef unless defined $p;
    return eval { $JSON->decode(_b64url_decode($p)) };
}


# in a connection's process

sub _serve {
    my ($self, $c) = @_;

    binmode $c;
    # the server ignores SIGCHLD; openssl's exit status is needed here
    $SIG{CHLD} = 'DEFAULT';
    local $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm 30;

    my $hd = $self->_read_head($c);
    my ($method, $uri, $path, $query, $h) =
        @$hd{qw(method target path query headers)};
    my %h = %$h;

    my (%q, @scopes);
    for my $pair (split /&/, $query // '') {
        my ($k, $v) = split /=/, $pair, 2;
        $_ = _unescape($_ // '') for $k, $v;
        if ($k eq 'scope') {
            # "scope=a b" holds several, space-separated
            push @scopes, grep { length } split / /, $v;
        } else {
            $q{$k} //= $v;
        }
    }

    my $req = { method => $method, uri => $uri, path => $path,
                query => $query, service => $q{service},
                account => $q{account}, scopes => \@scopes,
                authorization => $h{authorization},
                user_agent => $h{'user-agent'}, time => time, pid => $$ };

    if (($h{authorization} // '') =~ /^Basic\s+(\S+)/i) {
        my $dec = decode_base64($1);
        my ($u, $p) = split /:/, $dec, 2;
        $req->{user} = $u;
        $req->{password} = $p;
    }

    my $s = eval { $JSON->decode(slurp("$self->{dir}/settings.json")) }
        || $self->{settings};

    my ($status, $ctype, $body, @extra) = $self->_answer($req, $s);

    $req->{status} = $status;
    if (open my $log, '>>', $self->log_file) {
        flock($log, LOCK_EX);
        print $log $JSON->encode($req), "\n";
        close $log;
    }

    my $reason = { 200 => 'OK', 401 => 'Unauthorized', 403 => 'Forbidden',
                   404 => 'Not Found', 405 => 'Method Not Allowed',
                   500 => 'Internal Server Error',
                   503 => 'Service Unavailable' }->{$status} // 'Status';
    my $out = "HTTP/1.1 $status $reason\r\n"
        . "Content-Type: $ctype\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . join('', map { "$_\r\n" } @extra)
        . "Connection: close\r\n\r\n";
    $out .= $body unless $method eq 'HEAD';

    my $off = 0;
    while ($off < length $out) {
        my $n = syswrite($c, $out, length($out) - $off, $off);
        last unless defined $n;
        $off += $n;
    }
    close $c;
}


sub _error {
    my ($status, $code, $msg, @extra) = @_;
    return ($status, 'application/json',
            $JSON->encode({ errors => [ { code => $code, message => $msg,
                                          detail => undef } ] }), @extra);
}


# true (and counted) while fewer than $n requests have been failed since
# fail_next was set; connections are processes of their own: a locked file
sub _count_failure {
    my ($self, $n) = @_;
    my $f = "$self->{dir}/failed.count";
    open my $fh, '+>>', $f or die "$f: $!";
    flock $fh, LOCK_EX or die "flock $f: $!";
    seek $fh, 0, 0;
    my $count = <$fh> // 0;
    chomp $count;
    return 0 if $count >= $n;
    truncate $fh, 0;
    print $fh $count + 1, "\n";
    close $fh;
    return 1;
}


# ($status, $content_type, $body, @extra_header_lines); fills in $req
sub _answer {
    my ($self, $req, $s) = @_;

    return _error(404, 'NOT_FOUND', 'not found') unless $req->{path} eq '/token';
    return _error(405, 'UNSUPPORTED', 'GET only')
        unless $req->{method} eq 'GET' || $req->{method} eq 'HEAD';

    if ($s->{users}) {
        my $u = $req->{user};
        unless (defined $u && defined $s->{users}{$u}
                && $s->{users}{$u} eq ($req->{password} // ''))
        {
            return _error(401, 'UNAUTHORIZED', 'authentication required',
                          'WWW-Authenticate: Basic realm="pt-issuer"');
        }
    }

    return _error($s->{status} || 503, 'UNAVAILABLE', 'forced error')
        if $s->{fail_next} && $self->_count_failure($s->{fail_next});

    return _error($s->{status}, 'UNAVAILABLE', 'forced error')
        if $s->{status} && !$s->{fail_next};

    my @granted = $s->{no_push} ? ('pull') : ('pull', 'push');
    my %ok = map { $_ => 1 } @granted;
    my @access;
    for my $sc (@{ $req->{scopes} }) {
        # repository:NAME:ACTIONS (NAME may hold ':' only with a port,
        # which repository names do not have)
        my ($type, $name, $actions) = $sc =~ /^([^:]+):(.+):([^:]*)$/
            or next;
        my @a = grep { $ok{$_} } split /,/, $actions;
        push @access, { type => $type, name => $name, actions => \@a };
    }

    my $now = int time;
    my $ttl = $s->{omit_expires_in} ? 60 : $s->{expires_in} // 300;
    my $jti = sprintf '%d-%d-%06d', $now, $$, int rand 1e6;

    my $header = { alg => 'RS256', typ => 'JWT', x5c => [ $self->{x5c} ] };
    my $claims = {
        iss => $s->{issuer} // 'pt-issuer',
        sub => $req->{user} // '',
        aud => $req->{service} // '',
        exp => $now + $ttl,
        nbf => $now - 1,
        iat => $now,
        jti => $jti,
        access => \@access,
    };

    my $input = _b64url($JSON->encode($header)) . '.'
        . _b64url($JSON->encode($claims));
    my $sig = $self->_sign($input);
    my $jwt = "$input." . _b64url($sig);

    my %ans = (issued_at => _iso8601($now));
    $ans{token} = $jwt unless $s->{only_access_token};
    $ans{access_token} = $jwt unless $s->{only_token};
    $ans{expires_in} = $ttl + 0 unless $s->{omit_expires_in};

    $req->{token} = $jwt;
    $req->{jti} = $jti;
    $req->{exp} = $claims->{exp};
    $req->{expires_in} = $ans{expires_in};

    return (200, 'application/json', $JSON->encode(\%ans));
}


sub _sign {
    my ($self, $input) = @_;

    my $tmp = "$self->{dir}/sign.$$";
    spew($tmp, $input);
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>', '/dev/null';
        { no warnings 'exec';
          exec 'openssl', 'dgst', '-sha256', '-binary', '-sign', $self->{key},
              $tmp; }
        POSIX::_exit(127);
    }
    binmode $fh;
    local $/;
    my $sig = <$fh> // '';
    close $fh;
    unlink $tmp;
    die "openssl dgst -sign failed\n" if $? || !length $sig;
    return $sig;
}


# helpers

sub _b64url {
    my ($s) = @_;
    my $b = encode_base64($s, '');
    $b =~ tr{+/}{-_};
    $b =~ s/=+\z//;
    return $b;
}

sub _b64url_decode {
    my ($s) = @_;
    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);
    return decode_base64($s);
}

sub _unescape {
    my ($s) = @_;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}

sub _iso8601 {
    my @t = gmtime $_[0];
    return sprintf '%04d-%02d-%02dT%02d:%02d:%02dZ',
        $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0];
}


1;
