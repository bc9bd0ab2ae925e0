package PT::Certs;

# A test certificate authority and the certificates it signs, made with the
# openssl command line: for upstreams behind TLS with a private CA, mutual
# TLS (client certificates) and TLS through forward proxies.
#
#   my $ca = PT::Certs->new;                      # CN "pt test CA", 2 days
#   my $ca = PT::Certs->new(dir => $dir, cn => 'other CA', key => 'rsa');
#   $ca->ca_pem;           # the CA certificate (PEM file)
#   $ca->ca_key;           # its key
#   my $srv = $ca->server(name => 'srv', dns => ['registry-1.docker.io'],
#                         ip => ['127.0.0.1']);
#   my $cli = $ca->client(name => 'cli', cn => 'pt client');
#   $srv->{cert}; $srv->{key};        # PEM files
#   $ca->text($srv->{cert});          # a file's PEM text
#   $ca->ca_text;                     # the CA certificate's PEM text
#
# new(%opt):
#   dir  => DIR       where the files go (default: a new temp dir, kept
#                     with PT_KEEP=1)
#   cn   => NAME      the CA's common name (default "pt test CA")
#   days => N         validity of the CA and, by default, of what it signs
#                     (default 2)
#   key  => 'ec' | 'rsa'   key type of the CA and, by default, of what it
#                     signs: EC P-256 (default, made in milliseconds) or
#                     RSA 2048 (can take a second a key)
#
# issue(%opt) signs a certificate with the CA and returns
#   { name, cert => FILE, key => FILE, cert_text => PEM, key_text => PEM }
#   name => NAME      the files' base name in dir (NAME.pem, NAME.key);
#                     [A-Za-z0-9_.-], one certificate a name
#   cn   => NAME      subject common name (default: the first DNS name,
#                     else the first IP, else NAME)
#   dns  => [NAME, ...] or NAME     subjectAltName DNS entries
#   ip   => [ADDR, ...] or ADDR     subjectAltName IP entries
#   eku  => [ 'serverAuth', 'clientAuth' ] or one of them   (default none)
#   days => N, key => 'ec' | 'rsa'  (default: the CA's)
# server(%opt) is issue with eku serverAuth and at least one DNS or IP
# name; client(%opt) is issue with eku clientAuth.
#
# The keys are unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"); certificates
# are X.509 v3: the CA's with basicConstraints CA:TRUE and keyCertSign,
# the others with CA:FALSE, digitalSignature (and keyEncipherment for RSA).
# The openssl commands are quiet; a failing one dies with its output. Only
# the files in dir are used (a config of its own, not the system's
# openssl.cnf).

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempdir);
use PT::Util qw(slurp spew run_output);

my %KEY_ARGS = (
    ec  => [ '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256' ],
    rsa => [ '-newkey', 'rsa:2048' ],
);

my %EKU = map { $_ => 1 } qw(serverAuth clientAuth);


sub new {
    my ($class, %opt) = @_;

    my %known = map { $_ => 1 } qw(dir cn days key);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::Certs->new: unknown option(s) @bad" if @bad;

    my $key = $opt{key} // 'ec';
    croak "PT::Certs->new: key must be ec or rsa, not '$key'"
        unless $KEY_ARGS{$key};
    my $days = $opt{days} // 2;
    croak "PT::Certs->new: days must be a positive integer"
        unless $days =~ /^[1-9]\d*$/;

    my $self = bless {
        dir => $opt{dir} || tempdir('pt-certs-XXXXXXXX', TMPDIR => 1,
                                    CLEANUP => !$ENV{PT_KEEP}),
        cn => $opt{cn} // 'pt test CA',
        days => $days,
        key => $key,
        issued => {},
    }, $class;

    croak "PT::Certs->new: no directory $self->{dir}" unless -d $self->{dir};
    croak "PT::Certs->new: $self->{dir} already holds a CA"
        if -e $self->ca_pem;

    $self->_make_ca;
    return $self;
}


sub dir { $_[0]{dir} }
sub cn { $_[0]{cn} }
sub ca_pem { "$_[0]{dir}/ca.pem" }
sub ca_key { "$_[0]{dir}/ca.key" }
sub ca_text { $_[0]->text($_[0]->ca_pem) }

# what issue returned for NAME, or undef
sub issued { $_[0]{issued}{ $_[1] } }


# a PEM file's text; dies when it is missing or empty
sub text {
    my ($self, $file) = @_;
    my $s = slurp($file);
    croak "PT::Certs: no PEM in $file" unless length $s;
    return $s;
}


sub _make_ca {
    my ($self) = @_;

    my $cnf = "$self->{dir}/openssl.cnf";
    spew($cnf, <<'EOF');
[req]
distinguished_name = dn
prompt = no

[dn]

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

    _openssl('req', '-config', $cnf, '-x509', @{ $KEY_ARGS{ $self->{key} } },
             '-nodes', '-days', $self->{days},
             '-subj', '/CN=' . _dn_escape($self->{cn}),
             '-extensions', 'ca_ext',
             '-keyout', $self->ca_key, '-out', $self->ca_pem);
}


sub issue {
    my ($self, %opt) = @_;

    my %known = map { $_ => 1 } qw(name cn dns ip eku days key);
    my @bad = grep { !$known{$_} } sort keys %opt;
    croak "PT::Certs->issue: unknown option(s) @bad" if @bad;

    my $name = $opt{name};
    croak "PT::Certs->issue: name (file base name, [A-Za-z0-9_.-]) needed"
        unless defined $name && $name =~ /^[\w.-]+$/ && $name !~ /^\./;
    croak "PT::Certs->issue: name '$name' is taken"
        if $self->{issued}{$name} || $name eq 'ca' || $name eq 'openssl';

    my @dns = _list($opt{dns});
    my @ip = _list($opt{ip});
    my @eku = _list($opt{eku});
    for (@dns) {
        croak "PT::Certs->issue: bad DNS name '$_'"
            unless /^(?:\*\.)?[A-Za-z0-9_.-]+$/;
    }
    for (@ip) {
        croak "PT::Certs->issue: bad IP address '$_'"
            unless /^\d{1,3}(?:\.\d{1,3}){3}$/
                || /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/;
    }
    for (@eku) {
        croak "PT::Certs->issue: eku '$_' is not serverAuth or clientAuth"
            unless $EKU{$_};
    }

    my $key = $opt{key} // $self->{key};
    croak "PT::Certs->issue: key must be ec or rsa, not '$key'"
        unless $KEY_ARGS{$key};
    my $days = $opt{days} // $self->{days};
    croak "PT::Certs->issue: days must be a positive integer"
        unless $days =~ /^[1-9]\d*$/;

    my $cn = $opt{cn} // $dns[0] // $ip[0] // $name;

    my @ext = ('basicConstraints = critical,CA:FALSE',
               'keyUsage = critical,digitalSignature'
                   . ($key eq 'rsa' ? ',keyEncipherment' : ''),
               'subjectKeyIdentifier = hash',
               'authorityKeyIdentifier = keyid,issuer');
    push @ext, 'extendedKeyUsage = ' . join(',', @eku) if @eku;
    push @ext, 'subjectAltName = '
        . join(',', (map { "DNS:$_" } @dns), (map { "IP:$_" } @ip))
        if @dns || @ip;

    my $base = "$self->{dir}/$name";
    spew("$base.ext", join("\n", @ext) . "\n");

    _openssl('req', '-config', "$self->{dir}/openssl.cnf", '-new',
             @{ $KEY_ARGS{$key} }, '-nodes',
             '-subj', '/CN=' . _dn_escape($cn),
             '-keyout', "$base.key", '-out', "$base.csr");
    _openssl('x509', '-req', '-in', "$base.csr",
             '-CA', $self->ca_pem, '-CAkey', $self->ca_key,
             '-CAserial', "$self->{dir}/ca.srl", '-CAcreateserial',
             '-days', $days, '-extfile', "$base.ext",
             '-out', "$base.pem");
    unlink "$base.csr";

    my $r = { name => $name, cert => "$base.pem", key => "$base.key" };
    $r->{cert_text} = $self->text($r->{cert});
    $r->{key_text} = $self->text($r->{key});
    $self->{issued}{$name} = $r;

    return $r;
}


sub server {
    my ($self, %opt) = @_;
    croak "PT::Certs->server: eku is serverAuth" if exists $opt{eku};
    croak "PT::Certs->server: a DNS name or an IP address (dns, ip) needed"
        unless _list($opt{dns}) || _list($opt{ip});
    return $self->issue(%opt, eku => 'serverAuth');
}


sub client {
    my ($self, %opt) = @_;
    croak "PT::Certs->client: eku is clientAuth" if exists $opt{eku};
    return $self->issue(%opt, eku => 'clientAuth');
}


# helpers

sub _list {
    my ($v) = @_;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    croak "PT::Certs: a name or a list of names, not $v" if ref $v;
    return ($v);
}


# a value for -subj: '/', '+', ',' and '\' escaped
sub _dn_escape {
    my ($s) = @_;
    $s =~ s{([/+,\\=])}{\\$1}g;
    return $s;
}


sub _openssl {
    my (@args) = @_;
    my $out = run_output('openssl', @args);
    die "openssl $args[0] failed:\n$out" if $?;
}


1;
